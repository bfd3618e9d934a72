"""The DaemonSet's configuration as shipped (config/kubernetes.alloy) run by `shoal run`
against a cluster made of stand-ins: the API server as a process with the manifests' RBAC,
one kubelet per node checking the service account's token, annotated pods serving
metrics, and a real Prometheus receiving the remote write. This is the proof that the
file a user deploys scrapes its own node, labelled as kube-prometheus-stack does, and
nothing of the other node, with no more rights than manifests/base/rbac.yaml grants."""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.kube import RBAC_MANIFEST
from tests.kube.certs import SERVER_NAMES, make_certs
from tests.kube.kubelet import Kubelet
from tests.kube.rbac import Auth, Request
from tests.procs import ROOT, Proc, eventually, free_port, prometheus, query, spawn, wait_http
from tests.targets import Target

pytestmark = pytest.mark.integration
CONFIG = ROOT / "config" / "kubernetes.alloy"
SA_USER = "system:serviceaccount:shoal:shoal"
SA_TOKEN = "e2e-service-account-token"
ADMIN_TOKEN = "e2e-admin-token"
THIS, OTHER = "node-1", "node-2"


def node(name: str, kubelet_port: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  "kubernetes.io/os": "linux"}},
            "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                                     {"type": "Hostname", "address": name}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def pod(name: str, namespace: str, on: str, containers: list[dict[str, Any]],
        annotations: dict[str, str] | None = None, app: str = "") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}",
                         "labels": {"app.kubernetes.io/name": app or name.rsplit("-", 1)[0]},
                         "annotations": annotations or {}},
            "spec": {"nodeName": on, "containers": containers},
            "status": {"phase": "Running", "podIP": "127.0.0.1", "hostIP": "127.0.0.1",
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def container(name: str, port: int | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": f"registry.example/{name}:1.0"}
    if port is not None:
        c["ports"] = [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    return c


def scraped(port: int) -> dict[str, str]:
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(port),
            "prometheus.io/path": "/metrics"}


def payload(metric: str) -> str:
    return f"# TYPE {metric} counter\n{metric} 42\n"


class Cluster:
    """Two nodes' worth of stand-ins; pods are kept here so the kubelets serve them."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.certs = make_certs(tmp / "certs")
        self.auth = Auth()  # the kubelets' SubjectAccessReview answers, by the manifest
        self.auth.load_rbac_file(RBAC_MANIFEST)
        self.auth.add_service_account_token(SA_TOKEN, "shoal", "shoal")
        self.pods: list[dict[str, Any]] = []
        self.kubelets = {
            n: Kubelet(tmp, n, pods=lambda n=n: [p for p in self.pods
                                                 if p["spec"]["nodeName"] == n],
                       auth=self.auth,
                       certs=make_certs(tmp / "certs", SERVER_NAMES + (n,), prefix=f"kubelet-{n}"))
            for n in (THIS, OTHER)}
        self.api_port = free_port()
        self.api: Proc | None = None

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def start(self, objects: list[dict[str, Any]]) -> None:
        for k in self.kubelets.values():
            k.start()
        self.pods = [o for o in objects if o["kind"] == "Pod"]
        nodes = [node(n, k.port) for n, k in self.kubelets.items()]
        (self.tmp / "objects.yaml").write_text(
            "\n---\n".join(json.dumps(o) for o in nodes + objects))
        (self.tmp / "tokens.csv").write_text(f"{SA_TOKEN},{SA_USER},u1\n"
                                             f'{ADMIN_TOKEN},admin,u2,"system:masters"\n')
        self.api = spawn([sys.executable, "-m", "tests.kube.apiserver",
                          "--objects", str(self.tmp / "objects.yaml"),
                          "--port", str(self.api_port), "--certs", str(self.tmp / "certs"),
                          "--token-file", str(self.tmp / "tokens.csv"),
                          "--rbac", str(RBAC_MANIFEST)],
                         self.tmp, "apiserver", env={"PYTHONPATH": str(ROOT)})
        eventually(lambda: "stand-in on" in self.api.log_text(), timeout=30)

    def admin(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return httpx.request(method, self.api_url + path, json=body, verify=self.certs.client_context(),
                             headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)

    def add_pod(self, p: dict[str, Any]) -> None:
        r = self.admin("POST", f"/api/v1/namespaces/{p['metadata']['namespace']}/pods", p)
        assert r.status_code == 201, r.text
        self.pods.append(p)

    def stop(self) -> None:
        if self.api is not None:
            self.api.stop()
        for k in self.kubelets.values():
            k.stop()


def service_account(tmp: Path, ca: Path) -> Path:
    """The folder Kubernetes mounts at /var/run/secrets/kubernetes.io/serviceaccount."""
    sa = tmp / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text(SA_TOKEN)
    shutil.copy(ca, sa / "ca.crt")
    (sa / "namespace").write_text("shoal")
    return sa


@contextlib.contextmanager
def targets(n: int) -> Iterator[list[Target]]:
    ts = [Target(payload(f"app_{i}_requests_total")).start() for i in range(n)]
    try:
        yield ts
    finally:
        for t in ts:
            t.stop()


def series(prom: Proc, expr: str) -> list[dict[str, str]]:
    return [r["metric"] for r in query(prom.url, expr)]


def test_shipped_config_scrapes_this_node_as_kube_prometheus_stack(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    with targets(3) as (mine, theirs, added), prometheus(tmp_path / "prom") as prom:
        cluster.start([
            # This node: an annotated pod with a sidecar (scraped once, for its app
            # container), a pod that does not opt in.
            pod("shop-web-1", "shop", THIS,
                [container("web", mine.port), container("istio-proxy", 15090)],
                scraped(mine.port), app="shop-web"),
            pod("db-0", "shop", THIS, [container("postgres", 5432)]),
            # The other node: annotated too, but not ours to scrape.
            pod("shop-web-2", "shop", OTHER, [container("web", theirs.port)],
                scraped(theirs.port), app="shop-web"),
            pod("coredns-1", "kube-system", OTHER, [container("coredns", 9153)]),
        ])
        sa = service_account(tmp_path, cluster.certs.ca)
        agent_port = free_port()
        agent = spawn([sys.executable, "-m", "agent", "run",
                       f"--server.http.listen-addr=127.0.0.1:{agent_port}",
                       f"--storage.path={tmp_path / 'data'}", str(CONFIG)],
                      tmp_path, "agent", env={
                          "NODE_NAME": THIS,
                          "SHOAL_KUBERNETES_API_SERVER": cluster.api_url,
                          "SHOAL_SERVICE_ACCOUNT_DIR": str(sa),
                          "SHOAL_SCRAPE_INTERVAL": "1s",
                          "SHOAL_REMOTE_WRITE_URL": prom.url + "/api/v1/write"})
        try:
            wait_http(f"http://127.0.0.1:{agent_port}/-/ready", proc=agent.popen)

            def kubelet_up() -> list[dict[str, str]]:
                got = series(prom, 'up{job="kubelet"} == 1')
                return got if len(got) == 4 else []
            ups = eventually(kubelet_up, timeout=30)
            assert {u["metrics_path"] for u in ups} == {
                "/metrics", "/metrics/cadvisor", "/metrics/probes", "/metrics/resource"}
            assert {u["node"] for u in ups} == {THIS}
            assert {u["instance"] for u in ups} == {THIS}  # the node role's instance label

            # cAdvisor's own namespace/pod/container labels, this node's pods only.
            cpu = eventually(lambda: series(
                prom, 'container_cpu_usage_seconds_total{metrics_path="/metrics/cadvisor"}'))
            assert {(s["namespace"], s["pod"], s["container"]) for s in cpu} == {
                ("shop", "shop-web-1", "web"), ("shop", "shop-web-1", "istio-proxy"),
                ("shop", "db-0", "postgres")}
            assert all(s["job"] == "kubelet" and s["node"] == THIS for s in cpu)
            for path, metric in (("/metrics", "kubelet_running_pods"),
                                 ("/metrics/probes", "prober_probe_total"),
                                 ("/metrics/resource", "node_cpu_usage_seconds_total")):
                got = eventually(lambda p=path, m=metric: series(
                    prom, f'{m}{{job="kubelet",metrics_path="{p}"}}'))
                assert {s["node"] for s in got} == {THIS}, (path, got)

            # The annotated pod: once, for the container whose port is annotated.
            app = eventually(lambda: series(prom, "app_0_requests_total"))
            assert len(app) == 1
            assert {k: app[0][k] for k in ("job", "namespace", "pod", "container", "node")} == {
                "job": "shop-web", "namespace": "shop", "pod": "shop-web-1",
                "container": "web", "node": THIS}
            assert app[0]["instance"] == mine.address

            # A pod scheduled here while running is scraped.
            cluster.add_pod(pod("batch-7", "jobs", THIS, [container("worker", added.port)],
                                scraped(added.port)))
            new = eventually(lambda: series(prom, "app_2_requests_total"), timeout=20)
            assert (new[0]["namespace"], new[0]["pod"], new[0]["node"]) == (
                "jobs", "batch-7", THIS)

            # Nothing of the other node: its kubelet and its pod were never asked.
            assert series(prom, f'{{node="{OTHER}"}}') == []
            assert series(prom, '{pod=~"shop-web-2|coredns-1"}') == []
            assert list(cluster.kubelets[OTHER].hits) == []
            assert list(theirs.requests) == []

            # The kubelet's token check passed: every scrape by the service account.
            hits = list(cluster.kubelets[THIS].hits)
            assert hits and {(h.user, h.status) for h in hits} == {(SA_USER, 200)}
        finally:
            assert agent.stop() == 0, agent.log_text()[-3000:]
            report = rbac_report(cluster)
            cluster.stop()
    # The manifests' RBAC was enough: no request was refused.
    assert report["refused"] == [], report
    assert {("list", "nodes"), ("watch", "nodes"), ("list", "pods"), ("watch", "pods"),
            ("get", "nodes/metrics")} <= report["used"]
    print("RBAC grants the shipped configuration never used:", sorted(report["unused"]))


def rbac_report(cluster: Cluster) -> dict[str, Any]:
    """What the API server process served (its apiserver_request_total) plus what the
    kubelets checked, replayed through the manifest's rules: refused requests and the
    grants nobody used."""
    text = cluster.admin("GET", "/metrics").text
    refused, used = [], set()
    user = cluster.auth.tokens[SA_TOKEN]
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(kv.split("=", 1) for kv in line[line.index("{") + 1:line.index("}")]
                      .split(","))
        labels = {k: v.strip('"') for k, v in labels.items()}
        verb, res, code = labels["verb"].lower(), labels["resource"], labels["code"]
        if code in ("401", "403"):
            refused.append(line)
        if code == "200" and res in ("nodes", "pods"):  # the admin's POST is a 201
            cluster.auth.authorize(user, Request(verb, "", res))
            used.add((verb, res))
    for g in cluster.auth.used:
        used.add((g[2].verb, g[2].resource))
    return {"refused": refused, "used": used,
            "unused": [(g.verb, g.api_group, g.resource)
                       for g in cluster.auth.unused_grants("shoal")]}
