"""Remote write through a real forwarding proxy with Prometheus' proxy rules (the same
request options as scraping): a bare proxy_url sends every write through it, no_proxy hands
the decision to Go's httpproxy rules (a loopback endpoint goes direct); the component's
exclusions are positioned errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.remote import RemoteWrite, WALOptions
from agent.syntax.diag import DiagnosticsError
from tests.authproxy import Proxy
from tests.components.helpers import controller, files
from tests.remote.helpers import batch, endpoint, now_ms
from tests.remote.receiver import Receiver


@pytest.mark.parametrize("no_proxy,via_proxy", [("", True), ("example.com", False)])
def test_writes_through_the_proxy_unless_no_proxy_decides(tmp_path: Path, no_proxy: str, via_proxy: bool) -> None:
    async def main() -> tuple[int, list[str], str]:
        rx = await Receiver().start()
        async with Proxy() as proxy:
            ep = endpoint(rx.url)
            ep.http.proxy_url, ep.http.no_proxy = proxy.url, no_proxy
            rw = RemoteWrite(tmp_path / "wal", [ep], {}, WALOptions())
            await rw.start()
            for i in range(3):
                rw.append(batch(2, now_ms() + i, float(i)))
                assert await rw.flush()
            await rw.stop()
        await rx.stop()
        return len(rx.accepted), [f"{m} {t}" for m, t, _ in proxy.seen], rx.url

    accepted, seen, url = asyncio.run(main())
    assert accepted == 6  # every sample arrived either way
    # The proxy records the first request of each (kept-alive) connection.
    assert set(seen) == ({f"POST {url}"} if via_proxy else set())


def test_remote_write_proxy_exclusions_are_positioned(tmp_path: Path) -> None:
    c = controller(tmp_path)
    with pytest.raises(DiagnosticsError) as exc:
        c.check(files('prometheus.remote_write "w" {\n  endpoint {\n    url = "http://rx/api/v1/write"\n'
                      '    proxy_from_environment = true\n    no_proxy = "x"\n  }\n}\n'))
    (msg,) = [str(d) for d in exc.value.diagnostics]
    assert msg.startswith("main.alloy:2:3: ") and "proxy_from_environment is configured, no_proxy must not" in msg
