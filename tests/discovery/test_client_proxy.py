"""The Kubernetes client's proxy options (discovery.kubernetes and the operator components'
``client`` block) through a real forwarding proxy to the stand-in API server: a bare
``proxy_url`` tunnels every request, with ``proxy_connect_header`` on the CONNECT; with
``no_proxy`` Go's httpproxy rules decide, and the loopback API server is reached directly.
The exclusions between the options are the same positioned errors as elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agent.discovery.informers import Informers
from agent.syntax.diag import DiagnosticsError
from tests.authproxy import Proxy
from tests.components.helpers import files, run
from tests.discovery.fixtures import OBJECTS
from tests.discovery.test_component import TOKEN, config, controller, exported, running
from tests.discovery.test_informer import until
from tests.kube import RBAC_MANIFEST, APIServer


@pytest.fixture
def api(tmp_path: Path) -> APIServer:
    server = APIServer(tmp_path / "api", objects=yaml.safe_load(OBJECTS.read_text()),
                       rbac_files=[RBAC_MANIFEST])
    server.add_token(TOKEN, "shoal/shoal")
    return server


@pytest.mark.parametrize("no_proxy,tunnelled", [("", True), ("example.com", False)])
def test_discovery_reaches_the_api_server_through_the_proxy_unless_no_proxy_decides(
        tmp_path: Path, api: APIServer, no_proxy: str, tunnelled: bool) -> None:
    async def go() -> list[tuple[str, str, dict[str, str]]]:
        async with Proxy() as proxy:
            extra = f'proxy_url = "{proxy.url}"\n'
            extra += f'  no_proxy = "{no_proxy}"\n' if no_proxy else \
                '  proxy_connect_header = { "X-Tunnel" = ["a", "b"] }\n'
            async with running(tmp_path, config(api, "node", extra)) as (c, _):
                await until(lambda: len(exported(c)) > 0)
            return list(proxy.seen)

    with api:
        seen = run(go())
    host_port = api.url.split("://", 1)[1].rstrip("/")
    if tunnelled:
        assert seen and {(m, t) for m, t, _ in seen} == {("CONNECT", host_port)}
        # One header line per value, as Go sends them.
        assert {h.get("x-tunnel") for _, _, h in seen} == {"a\nb"}
    else:
        assert seen == []


@pytest.mark.parametrize("component", ["discovery.kubernetes", "prometheus.operator.podmonitors"])
def test_client_proxy_exclusions_are_positioned(tmp_path: Path, component: str) -> None:
    if component == "discovery.kubernetes":
        src = (f'{component} "k" {{\n  role = "pod"\n  api_server = "https://k:6443"\n'
               '  no_proxy = "x"\n}\n')
        line = 1
    else:
        src = (f'{component} "k" {{\n  forward_to = []\n  client {{\n'
               '    api_server = "https://k:6443"\n    proxy_from_environment = true\n'
               '    proxy_url = "http://p:3128"\n  }\n}\n')
        line = 3
    c = controller(tmp_path, Informers())
    with pytest.raises(DiagnosticsError) as exc:
        c.check(files(src))
    (msg,) = [str(d) for d in exc.value.diagnostics]
    assert msg.startswith(f"main.alloy:{line}:")
    assert ("if no_proxy is configured, proxy_url must also be configured" in msg
            or "if proxy_from_environment is configured, proxy_url must not be configured" in msg)
