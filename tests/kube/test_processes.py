"""The stand-in as other programs meet it: as a process (`python -m tests.kube.apiserver`)
for kubernetes-asyncio, and in a test's thread for Debian's real vmagent, whose
kubernetes_sd_configs list and watch it as they would a cluster."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes_asyncio import client

from tests.kube import RBAC_MANIFEST, APIServer, make_certs
from tests.procs import ROOT, Proc, eventually, free_port, spawn, wait_http

pytestmark = pytest.mark.integration


def pod(name: str, ip: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"nodeName": "node-1", "containers": [
                {"name": "nginx", "image": "nginx",
                 "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
            "status": {"phase": "Running", "podIP": ip, "hostIP": "10.1.0.1"}}


def test_runs_as_a_process(tmp_path: Path) -> None:
    objs = tmp_path / "objs.yaml"
    objs.write_text(json.dumps(pod("web-1", "10.2.0.5")))
    (tmp_path / "tokens.csv").write_text("proc-token,system:serviceaccount:shoal:shoal,u1\n"
                                         'admin-token,admin,u2,"system:masters"\n')
    port = free_port()
    certs = make_certs(tmp_path / "certs")  # the process reuses these files
    proc = spawn([sys.executable, "-m", "tests.kube.apiserver", "--objects", str(objs),
                  "--port", str(port), "--certs", str(tmp_path / "certs"),
                  "--token-file", str(tmp_path / "tokens.csv"), "--rbac", str(RBAC_MANIFEST),
                  "--compact-interval", "0.2"],
                 tmp_path, "apiserver", env={"PYTHONPATH": str(ROOT)})
    try:
        eventually(lambda: "stand-in on" in proc.log_text(), timeout=30)

        def conf(token: str) -> client.Configuration:
            c = client.Configuration(host=f"https://127.0.0.1:{port}")
            c.ssl_ca_cert = str(certs.ca)
            c.api_key = {"BearerToken": f"Bearer {token}"}
            return c

        async def go() -> tuple[Any, int]:
            async with client.ApiClient(conf("admin-token")) as admin:
                v1 = client.CoreV1Api(admin)
                first = (await v1.list_namespaced_pod("shop")).metadata.resource_version
                assert int(first) > 1_000_000_000_000  # versions start from the clock
                await v1.create_namespaced_pod("shop", pod("web-2", "10.2.0.6"))
                await v1.delete_namespaced_pod("web-1", "shop")
                expired = 0
                while not expired:  # the process compacts by itself: the first version goes
                    try:
                        await v1.list_namespaced_pod("shop", resource_version=first,
                                                     resource_version_match="Exact")
                        await asyncio.sleep(0.1)
                    except client.ApiException as e:
                        expired = e.status
                assert expired == 410
            async with client.ApiClient(conf("proc-token")) as ac:
                v1 = client.CoreV1Api(ac)
                with pytest.raises(client.ApiException) as denied:
                    await v1.create_namespaced_pod("shop", pod("web-3", "10.2.0.7"))
                return await v1.list_namespaced_pod("shop"), denied.value.status
        pods, status = asyncio.run(go())
        assert [p.metadata.name for p in pods.items] == ["web-2"]
        assert status == 403  # the manifest grants reads only
        assert "RuntimeWarning" not in proc.log_text()
    finally:
        assert proc.stop() == 0


@pytest.fixture
def api(tmp_path: Path) -> Iterator[APIServer]:
    server = APIServer(tmp_path, rbac_files=[RBAC_MANIFEST], bookmark_interval=1.0)
    server.add_token("vm-token", "shoal/shoal")
    server.apply(pod("web-1", "10.2.0.5"))
    with server:
        yield server


def vmagent(tmp_path: Path, api: APIServer) -> Proc:
    (tmp_path / "token").write_text("vm-token")
    sd = {"api_server": api.url, "tls_config": {"ca_file": str(api.certs.ca)},
          "bearer_token_file": str(tmp_path / "token")}
    cfg = {"scrape_configs": [{"job_name": "pods", "scrape_interval": "1h",
                               "kubernetes_sd_configs": [{"role": "pod", **sd}]}]}
    (tmp_path / "vmagent.yml").write_text(json.dumps(cfg))
    port = free_port()
    proc = spawn(["vmagent", f"-promscrape.config={tmp_path / 'vmagent.yml'}",
                  f"-httpListenAddr=127.0.0.1:{port}", "-remoteWrite.url=http://127.0.0.1:1/",
                  f"-remoteWrite.tmpDataPath={tmp_path / 'vmdata'}",
                  "-promscrape.dropOriginalLabels=false",
                  "-promscrape.kubernetesSDCheckInterval=1s"], tmp_path, "vmagent")
    proc.url = f"http://127.0.0.1:{port}"
    wait_http(proc.url + "/health", proc=proc.popen)
    return proc


def discovered(proc: Proc) -> dict[str, dict[str, str]]:
    body = httpx.get(proc.url + "/api/v1/targets", timeout=5).json()
    return {t["discoveredLabels"]["__meta_kubernetes_pod_name"]: t["discoveredLabels"]
            for t in body["data"]["activeTargets"]}


def test_vmagent_lists_and_watches_the_standin(tmp_path: Path, api: APIServer) -> None:
    proc = vmagent(tmp_path, api)
    try:
        first = eventually(lambda: discovered(proc).get("web-1"), timeout=30)
        assert first["__address__"] == "10.2.0.5:8080"
        assert first["__meta_kubernetes_pod_container_port_name"] == "http"
        api.apply(pod("web-2", "10.2.0.6"))
        eventually(lambda: "web-2" in discovered(proc), timeout=30)
        api.delete("pods", "web-1", "shop")
        eventually(lambda: set(discovered(proc)) == {"web-2"}, timeout=30)
        used = api.requests(resource="pods")
        assert {r.verb for r in used} >= {"list", "watch"}
        assert all(r.status == 200 for r in used)
    finally:
        proc.stop()
