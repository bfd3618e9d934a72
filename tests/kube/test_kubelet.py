"""The kubelet stand-in: its payloads parse as the Prometheus text format with the kubelet's
and cAdvisor's label names, and it checks tokens and the nodes/metrics grant."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.kube import RBAC_MANIFEST, APIServer, Kubelet


@pytest.fixture
def api(tmp_path: Path) -> Iterator[APIServer]:
    server = APIServer(tmp_path, rbac_files=[RBAC_MANIFEST])
    server.add_token("shoal-token", "shoal/shoal")
    server.add_token("stranger", "default/stranger")
    for name, node in (("web-1", "node-1"), ("web-2", "node-2")):
        server.apply({"apiVersion": "v1", "kind": "Pod",
                      "metadata": {"name": name, "namespace": "shop"},
                      "spec": {"nodeName": node, "containers": [
                          {"name": "nginx", "image": "nginx:1.25"},
                          {"name": "exporter", "image": "nginx/exporter:1.1"}]}})
    yield server


def get(kubelet: Kubelet, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(verify=kubelet.certs.client_context()) as c:
        return c.get(kubelet.url + path, headers=headers)


def samples(text: str) -> list[tuple[str, dict[str, str]]]:
    return [(s.name, s.labels) for fam in text_string_to_metric_families(text)
            for s in fam.samples]


def test_metrics_endpoints_with_real_label_names(api: APIServer, tmp_path: Path) -> None:
    with Kubelet.for_apiserver(tmp_path, api, "node-1") as kubelet:
        assert kubelet.certs.ca == api.certs.ca  # one cluster CA for both
        cad = get(kubelet, "/metrics/cadvisor", "shoal-token")
        assert cad.status_code == 200 and cad.headers["content-type"].startswith("text/plain")
        cpu = [lab for name, lab in samples(cad.text)
               if name == "container_cpu_usage_seconds_total"]
        assert {lab["container"] for lab in cpu} == {"nginx", "exporter"}
        assert {lab["pod"] for lab in cpu} == {"web-1"}  # only this node's pods
        assert set(cpu[0]) == {"container", "cpu", "id", "image", "name", "namespace", "pod"}
        assert cpu[0]["namespace"] == "shop" and cpu[0]["id"].startswith("/kubepods/")
        kub = samples(get(kubelet, "/metrics", "shoal-token").text)
        assert ("kubelet_running_pods", {}) in kub
        assert ("kubelet_node_name", {"node": "node-1"}) in kub
        probes = samples(get(kubelet, "/metrics/probes", "shoal-token").text)
        assert {lab["probe_type"] for _, lab in probes} == {"Liveness", "Readiness"}
        res = samples(get(kubelet, "/metrics/resource", "shoal-token").text)
        assert ("pod_cpu_usage_seconds_total", {"namespace": "shop", "pod": "web-1"}) in res
        assert get(kubelet, "/metrics/nope", "shoal-token").status_code == 404


def test_tokens_and_rbac(api: APIServer, tmp_path: Path) -> None:
    with Kubelet.for_apiserver(tmp_path, api, "node-1") as kubelet:
        assert get(kubelet, "/metrics", None).status_code == 401
        assert get(kubelet, "/metrics", "made-up").status_code == 401
        denied = get(kubelet, "/metrics/cadvisor", "stranger")
        assert denied.status_code == 403 and "subresource=metrics" in denied.text
        assert [h.status for h in kubelet.hits] == [401, 401, 403]
    assert ("get", "", "nodes/metrics") in {
        (g.verb, g.api_group, g.resource) for g in api.auth.unused_grants("shoal")}

    with Kubelet.for_apiserver(tmp_path, api, "node-1") as kubelet:
        assert get(kubelet, "/metrics", "shoal-token").status_code == 200
    assert ("get", "", "nodes/metrics") not in {
        (g.verb, g.api_group, g.resource) for g in api.auth.unused_grants("shoal")}


def test_plain_token_list(tmp_path: Path) -> None:
    with Kubelet(tmp_path, tokens=["t1"]) as kubelet:
        assert get(kubelet, "/metrics", "t1").status_code == 200
        assert get(kubelet, "/metrics", "t2").status_code == 401
        port = kubelet.port
        kubelet.stop()
        kubelet.start()
        assert kubelet.port == port and get(kubelet, "/healthz", "t1").text == "ok"
