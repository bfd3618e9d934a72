"""Faults a DaemonSet meets that the component tests do not: an API server that is not up
yet when the agent starts, credentials the API server refuses (401) or RBAC that does not
grant the read (403), a kubelet whose certificate the cluster CA did not sign, a user who
says insecure_skip_verify, and a service-account token that Kubernetes rotates under a
running scrape. Each must show where a user looks (health, a metric, the target's error)
and never crash the agent."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from agent.discovery.informers import Informers
from agent.runtime.controller import Controller
from agent.runtime.health import State
from tests.components.helpers import files, run
from tests.discovery.fixtures import OBJECTS
from tests.discovery.test_component import TOKEN, config, controller
from tests.discovery.test_informer import until
from tests.kube import RBAC_MANIFEST, APIServer, make_certs
from tests.kube.certs import SERVER_NAMES
from tests.kube.kubelet import Kubelet
from tests.kube.rbac import Auth
from tests.procs import free_port


@contextlib.asynccontextmanager
async def running(tmp_path: Path, src: str) -> AsyncIterator[tuple[Controller, CollectorRegistry]]:
    """The configuration under a controller whose shared informers report into a registry,
    as `shoal run` wires them into the process's /metrics."""
    reg = CollectorRegistry()
    informers = Informers(registry=reg, min_backoff=0.05, max_backoff=0.2)
    informers.start()
    c = controller(tmp_path, informers)
    await c.load(files(src))
    try:
        yield c, reg
    finally:
        await c.stop()
        await informers.stop()


def informer_errors(reg: CollectorRegistry) -> dict[str, float]:
    """shoal_kubernetes_informer_errors_total by reason."""
    out: dict[str, float] = {}
    for fam in reg.collect():
        for s in fam.samples:
            if s.name == "shoal_kubernetes_informer_errors_total":
                out[s.labels["reason"]] = out.get(s.labels["reason"], 0) + s.value
    return out


def api_server(tmp_path: Path, port: int = 0) -> APIServer:
    server = APIServer(tmp_path / "api", objects=yaml.safe_load(OBJECTS.read_text()),
                       rbac_files=[RBAC_MANIFEST], port=port)
    server.add_token(TOKEN, "shoal/shoal")
    server.add_token("unbound-token", "shoal/nobody")  # authenticated, no binding
    return server


def test_unreachable_api_server_at_start_recovers_when_it_comes_up(tmp_path: Path) -> None:
    api = api_server(tmp_path, port=free_port())  # not started: the port refuses

    async def go() -> None:
        async with running(tmp_path, config(api, "node")) as (c, reg):
            node = c.node("discovery.kubernetes.k")
            await until(lambda: node.health().state == State.UNHEALTHY, 10.0)
            message = node.health().message
            assert "nodes" in message and "connect" in message.lower(), message
            assert sum(informer_errors(reg).values()) >= 1
            assert node.exports.targets == []
            await asyncio.to_thread(api.start)
            try:
                await until(lambda: node.health().state == State.HEALTHY, 10.0)
                await until(lambda: len(node.exports.targets) == 2)
            finally:
                await asyncio.to_thread(api.stop)

    run(go())


def test_401_and_403_on_health_and_in_a_metric(tmp_path: Path) -> None:
    with api_server(tmp_path) as api:
        for token, status, words in (("not-a-token", 401, "unauthorized"),
                                     ("unbound-token", 403, "forbidden")):
            async def go(token: str = token, words: str = words) -> dict[str, float]:
                async with running(tmp_path, config(api, "pod", token=token)) as (c, reg):
                    node = c.node("discovery.kubernetes.k")
                    await until(lambda: node.health().state == State.UNHEALTHY, 10.0)
                    assert words in node.health().message.lower(), node.health().message
                    assert node.exports.targets == []
                    return informer_errors(reg)
            errors = run(go())
            assert errors.get(words, 0) >= 1, errors
            assert status in {r.status for r in list(api.log) if r.path == "/api/v1/pods"}


# -- the kubelet, scraped as config/kubernetes.alloy does -------------------------------

def scrape_config(kubelet: Kubelet, token_file: Path, ca: Path, insecure: bool = False) -> str:
    return f'''
prometheus.scrape "kubelet" {{
  targets           = [{{"__address__" = "127.0.0.1:{kubelet.port}", "node" = "{kubelet.node}"}}]
  forward_to        = [test.sink.s.receiver]
  job_name          = "kubelet"
  scheme            = "https"
  metrics_path      = "/metrics/cadvisor"
  scrape_interval   = "200ms"
  bearer_token_file = "{token_file}"
  tls_config {{
    ca_file              = "{ca}"
    insecure_skip_verify = {"true" if insecure else "false"}
  }}
}}

test.sink "s" {{ }}
'''


def target(c: Controller) -> dict[str, Any]:
    """The one target's state; "unknown" until the pool has it."""
    targets = c.node("prometheus.scrape.kubelet").debug_info()["targets"]
    assert len(targets) <= 1
    return targets[0] if targets else {"health": "unknown", "last_error": ""}


def cluster_ca_and_token(tmp_path: Path) -> tuple[Path, Path, Auth]:
    ca = make_certs(tmp_path / "cluster").ca
    auth = Auth()
    auth.load_rbac_file(RBAC_MANIFEST)
    auth.add_service_account_token("sa-token-1", "shoal", "shoal")
    token = tmp_path / "token"
    token.write_text("sa-token-1")
    return ca, token, auth


def test_kubelet_with_an_untrusted_certificate_then_insecure_skip_verify(tmp_path: Path) -> None:
    ca, token, auth = cluster_ca_and_token(tmp_path)
    # Self-signed by its own CA, as a kubelet without serverTLSBootstrap serves.
    with Kubelet(tmp_path / "selfsigned", "node-1", auth=auth) as kubelet:
        async def go(insecure: bool) -> dict[str, Any]:
            async with running(tmp_path, scrape_config(kubelet, token, ca, insecure)) as (c, _):
                await until(lambda: target(c)["health"] != "unknown", 10.0)
                return target(c)
        refused = run(go(False))
        assert refused["health"] == "down"
        assert "certificate verify failed" in refused["last_error"], refused["last_error"]
        assert list(kubelet.hits) == []  # the handshake failed: no request reached it
        accepted = run(go(True))
        assert accepted["health"] == "up", accepted["last_error"]
        assert accepted["series"] > 0
        assert {(h.path, h.status) for h in kubelet.hits} == {("/metrics/cadvisor", 200)}


def test_a_rotated_token_is_used_by_the_next_scrapes(tmp_path: Path) -> None:
    ca, token, auth = cluster_ca_and_token(tmp_path)
    certs = make_certs(tmp_path / "cluster", SERVER_NAMES + ("node-1",), prefix="kubelet")
    with Kubelet(tmp_path, "node-1", auth=auth, certs=certs) as kubelet:
        async def go() -> None:
            async with running(tmp_path, scrape_config(kubelet, token, ca)) as (c, _):
                await until(lambda: target(c)["health"] == "up", 10.0)
                # Kubernetes writes a new token and, an hour later, the old one expires.
                auth.add_service_account_token("sa-token-2", "shoal", "shoal")
                token.write_text("sa-token-2")
                auth.remove_token("sa-token-1")
                seen = len(kubelet.hits)
                await until(lambda: len(kubelet.hits) >= seen + 3, 10.0)
                assert target(c)["health"] == "up", target(c)["last_error"]
                assert {h.status for h in list(kubelet.hits)[seen + 1:]} == {200}
                # And a token the kubelet does not know is a visible error on the target.
                token.write_text("revoked-token")
                await until(lambda: target(c)["health"] == "down", 10.0)
                assert "401" in target(c)["last_error"], target(c)["last_error"]

        run(go())
