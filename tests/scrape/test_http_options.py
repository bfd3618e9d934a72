"""Scrape HTTP options against real servers: OAuth2 client credentials (a real token
endpoint, targets that check the token), proxies (a real forwarding proxy that also opens
CONNECT tunnels) with Prometheus' no_proxy / proxy_from_environment / proxy_connect_header
rules, keep_dropped_targets, honor_metadata and type-and-unit labels; and the
prometheus.scrape checks of those options as positioned errors."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from agent import labels as L
from agent.httpconfig import HTTPClientConfig, OAuth2Config, ProxyConfig, TLSConfig
from agent.httpproxy import NoProxy, proxy_for
from agent.relabel import Rule
from agent.scrape.config import ScrapeConfig
from agent.scrape.pool import ScrapePool
from agent.syntax.diag import DiagnosticsError
from tests.authproxy import Idp, Proxy, Target, serve
from tests.components.helpers import controller, files, run
from tests.scrape.server import Collector, Exporter
from tests.scrape.test_loop import T0, make_loop, scrape
from tests.scrape.test_proto_loop import payload, serve_proto

# The machine's non-loopback address: Go's httpproxy never proxies loopback once
# no_proxy or the environment decides, so those rules need a target elsewhere.
OTHER_IP = "192.0.2.2"


def _other_ip_usable() -> bool:
    try:
        with socket.socket() as s:
            s.bind((OTHER_IP, 0))
        return True
    except OSError:
        return False


async def until(cond: Callable[[], bool], timeout: float = 8.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def cfg(**kw: Any) -> ScrapeConfig:
    return ScrapeConfig(job_name="j", scrape_interval=0.3, scrape_timeout=0.25, **kw)


def ups(coll: Collector) -> list[float]:
    return [v for b in coll.batches for lab, v in zip(b.labels, b.values, strict=True)
            if dict(lab).get("__name__") == "up"]


# ---------------------------------------------------------------- OAuth2


def test_oauth2_token_shared_by_a_jobs_targets_and_refreshed_before_expiry() -> None:
    async def go() -> None:
        # expires_in 11 s: treated as expired 10 s early, so a new token after ~1 s.
        idp = Idp("my client", "s3cr/t", expires_in=11)
        target = Target(idp=idp)
        async with serve(idp.app()) as idp_port, serve(target.app()) as p1, \
                serve(target.app(), "127.0.0.3") as p2:
            o2 = OAuth2Config(client_id="my client", client_secret="s3cr/t", scopes=["read", "write"],
                              token_url=f"http://127.0.0.1:{idp_port}/token",
                              endpoint_params={"audience": "metrics"})
            coll = Collector()
            pool = ScrapePool(cfg(http=HTTPClientConfig(oauth2=o2)), coll)
            pool.sync([L.from_dict({"__address__": f"127.0.0.1:{p1}"}),
                       L.from_dict({"__address__": f"127.0.0.3:{p2}"})])
            try:
                await until(lambda: len(pool.targets()) == 2 and all(t.health == "up" for t in pool.targets()))
                assert idp.issued == ["tok-1"]  # one token for both targets
                assert idp.forms[0] == {"grant_type": "client_credentials", "scope": "read write",
                                        "audience": "metrics"}
                await until(lambda: len(idp.issued) >= 2)
                n = len(target.seen)
                await until(lambda: len(target.seen) >= n + 4)
                assert all(t.health == "up" for t in pool.targets())
                assert f"Bearer {idp.issued[-1]}" in target.seen[n:]
            finally:
                await pool.stop()
    run(go())


def test_oauth2_refused_credentials_fail_the_scrape_with_the_reason_not_the_secret() -> None:
    async def go() -> None:
        idp = Idp("c", "right")
        target = Target(idp=idp)
        async with serve(idp.app()) as idp_port, serve(target.app()) as port:
            o2 = OAuth2Config(client_id="c", client_secret="wrong-s3cret",
                              token_url=f"http://127.0.0.1:{idp_port}/token")
            pool = ScrapePool(cfg(http=HTTPClientConfig(oauth2=o2)), Collector())
            pool.sync([L.from_dict({"__address__": f"127.0.0.1:{port}"})])
            try:
                await until(lambda: bool(pool.targets()) and pool.targets()[0].last_error != "")
                err = pool.targets()[0].last_error
                assert "token endpoint" in err and "HTTP 401" in err and "s3cret" not in err
                assert target.seen == []  # never asked without a token
            finally:
                await pool.stop()
    run(go())


def test_oauth2_unreadable_tls_file_fails_scrapes_not_the_pool(tmp_path: Path) -> None:
    async def go() -> None:
        target = Target()
        async with serve(target.app()) as port:
            o2 = OAuth2Config(client_id="c", client_secret="s", token_url="https://127.0.0.1:1/token",
                              tls_config=TLSConfig(ca_file=str(tmp_path / "absent.pem")))
            pool = ScrapePool(cfg(http=HTTPClientConfig(oauth2=o2)), Collector())
            pool.sync([L.from_dict({"__address__": f"127.0.0.1:{port}"})])  # does not raise
            try:
                await until(lambda: bool(pool.targets()) and pool.targets()[0].last_error != "")
                assert "oauth2: token endpoint https://127.0.0.1:1/token" in pool.targets()[0].last_error
                assert target.seen == []
            finally:
                await pool.stop()
    run(go())


# ---------------------------------------------------------------- proxies


@pytest.mark.parametrize("entries,host,port,bypass", [
    ("example.com", "example.com", "80", True),
    ("example.com", "a.b.example.com", "80", True),
    (".example.com", "example.com", "80", False),
    (".example.com", "x.example.com", "443", True),
    ("*.example.com", "x.example.com", "443", True),
    ("example.com:8080", "example.com", "80", False),
    ("example.com:8080", "example.com", "8080", True),
    ("10.0.0.0/8", "10.1.2.3", "80", True),
    ("10.0.0.0/8", "11.1.2.3", "80", False),
    ("10.1.2.3", "10.1.2.3", "9100", True),
    ("10.1.2.3:9100", "10.1.2.3", "9000", False),
    ("[::1]:80, fd00::/8", "fd00::5", "80", True),
    ("*", "anything.at.all", "1", True),
    (" , ,other.org", "example.com", "80", False),
])
def test_no_proxy_entries_as_go_httpproxy_reads_them(entries: str, host: str, port: str, bypass: bool) -> None:
    assert NoProxy.parse(entries).bypass(host, port) is bypass


def test_proxy_choice_per_url(monkeypatch: pytest.MonkeyPatch) -> None:
    fixed = ProxyConfig(proxy_url="http://p:3128")
    assert proxy_for(fixed, "http://127.0.0.1:9100/metrics") == "http://p:3128"  # bare URL: everything
    with_no = ProxyConfig(proxy_url="http://p:3128", no_proxy="internal")
    assert proxy_for(with_no, "http://127.0.0.1:9100/") is None  # httpproxy: never loopback
    assert proxy_for(with_no, "http://localhost:9100/") is None
    assert proxy_for(with_no, "https://a.internal/") is None
    assert proxy_for(with_no, "https://a.external/") == "http://p:3128"
    env = ProxyConfig(proxy_from_environment=True)
    for k in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(k, raising=False)
    assert proxy_for(env, "http://10.0.0.1/") is None
    monkeypatch.setenv("http_proxy", "envproxy:8080")  # no scheme: http://
    monkeypatch.setenv("HTTPS_PROXY", "http://secure:8443")
    monkeypatch.setenv("NO_PROXY", "10.0.0.0/24")
    assert proxy_for(env, "http://10.0.1.1/") == "http://envproxy:8080"
    assert proxy_for(env, "https://10.0.1.1/") == "http://secure:8443"
    assert proxy_for(env, "http://10.0.0.9/") is None


@pytest.mark.parametrize("kw,message", [
    ({"no_proxy": "x"}, "if no_proxy is configured, proxy_url must also be configured"),
    ({"proxy_from_environment": True, "proxy_url": "http://p"},
     "if proxy_from_environment is configured, proxy_url must not be configured"),
    ({"proxy_from_environment": True, "no_proxy": "x"},
     "if proxy_from_environment is configured, no_proxy must not be configured"),
    ({"proxy_connect_header": {"A": ["b"]}},
     "if proxy_connect_header is configured, proxy_url or proxy_from_environment must also be configured"),
])
def test_proxy_exclusions(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ProxyConfig(**kw).validate()


def test_scrapes_through_a_real_proxy_with_no_proxy_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    if not _other_ip_usable():
        pytest.fail(f"{OTHER_IP} is not an address of this machine; the no_proxy cases need one")
    for k in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(k, raising=False)

    async def scrape_once(http: HTTPClientConfig, addr: str) -> str:
        pool = ScrapePool(cfg(http=http), Collector())
        pool.sync([L.from_dict({"__address__": addr})])
        try:
            await until(lambda: bool(pool.targets()) and pool.targets()[0].health != "unknown")
            return pool.targets()[0].health
        finally:
            await pool.stop()

    async def go() -> None:
        target = Target()
        async with Proxy() as proxy, serve(target.app(), OTHER_IP) as port:
            addr = f"{OTHER_IP}:{port}"
            url = f"http://{addr}/metrics"
            # proxy_url alone: through the proxy.
            assert await scrape_once(HTTPClientConfig(proxy_url=proxy.url), addr) == "up"
            assert [s[:2] for s in proxy.seen] == [("GET", url)]
            # no_proxy naming the target's network: direct.
            h = HTTPClientConfig(proxy_url=proxy.url, no_proxy="example.com, 192.0.2.0/24")
            assert await scrape_once(h, addr) == "up"
            assert len(proxy.seen) == 1 and len(target.seen) == 2
            # no_proxy naming something else: through the proxy.
            h = HTTPClientConfig(proxy_url=proxy.url, no_proxy="example.com,10.0.0.0/8")
            assert await scrape_once(h, addr) == "up"
            assert len(proxy.seen) == 2
            # proxy_from_environment: HTTP_PROXY, then NO_PROXY exempting the target.
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            assert await scrape_once(HTTPClientConfig(proxy_from_environment=True), addr) == "up"
            assert len(proxy.seen) == 3
            monkeypatch.setenv("NO_PROXY", OTHER_IP)
            assert await scrape_once(HTTPClientConfig(proxy_from_environment=True), addr) == "up"
            assert len(proxy.seen) == 3 and len(target.seen) == 5
    run(go())


def test_proxy_connect_header_sent_on_the_tunnel_to_an_https_target_only(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    async def go() -> None:
        target = Target()
        async with Proxy() as proxy, serve(target.app(), ctx=server_ctx) as tls_port, \
                serve(target.app()) as plain_port:
            headers = {"Proxy-Authorization": ["Basic cHJveHk6czNjcmV0"], "X-Tenant": ["a", "b"]}
            http = HTTPClientConfig(proxy_url=proxy.url, proxy_connect_header=headers,
                                    tls_config=TLSConfig(ca_file=str(ca_file)))
            pool = ScrapePool(cfg(http=http, scheme="https"), Collector())
            pool.sync([L.from_dict({"__address__": f"127.0.0.1:{tls_port}"})])
            plain = ScrapePool(cfg(http=http), Collector())
            plain.sync([L.from_dict({"__address__": f"127.0.0.1:{plain_port}"})])
            try:
                await until(lambda: all(p.targets() and p.targets()[0].health == "up" for p in (pool, plain)))
            finally:
                await pool.stop()
                await plain.stop()
            connects = [s for s in proxy.seen if s[0] == "CONNECT"]
            gets = [s for s in proxy.seen if s[0] == "GET"]
            assert connects and connects[0][1] == f"127.0.0.1:{tls_port}"
            assert connects[0][2]["proxy-authorization"] == "Basic cHJveHk6czNjcmV0"
            assert connects[0][2]["x-tenant"] == "a\nb"  # one line per value, as Go sends them
            assert gets and "proxy-authorization" not in gets[0][2] and "x-tenant" not in gets[0][2]
    run(go())


def test_prometheus_scrape_refuses_conflicting_proxy_and_auth_settings_with_positions(tmp_path: Path) -> None:
    c = controller(tmp_path)
    cases = [
        ('  no_proxy = "10.0.0.0/8"\n', "if no_proxy is configured, proxy_url must also be configured"),
        ('  proxy_url = "http://p:3128"\n  proxy_from_environment = true\n',
         "if proxy_from_environment is configured, proxy_url must not be configured"),
        ('  bearer_token = "x"\n  oauth2 {\n    token_url = "http://idp/token"\n  }\n',
         "at most one of basic_auth, authorization, oauth2, bearer_token & bearer_token_file"),
        ('  oauth2 {\n    token_url = "http://idp/token"\n    no_proxy = "x"\n  }\n',
         "if no_proxy is configured, proxy_url must also be configured"),
    ]
    for body, message in cases:
        src = f'prometheus.scrape "s" {{\n  targets = []\n  forward_to = []\n{body}}}\n'
        with pytest.raises(DiagnosticsError) as exc:
            c.check(files(src))
        (msg,) = [str(d) for d in exc.value.diagnostics]
        assert msg.startswith("main.alloy:") and message in msg, msg
    c.check(files('prometheus.scrape "s" {\n  targets = []\n  forward_to = []\n'
                  '  proxy_url = "http://p:3128"\n  no_proxy = "10.0.0.0/8"\n'
                  '  proxy_connect_header = { "X-A" = ["b"] }\n'
                  '  oauth2 {\n    client_id = "c"\n    client_secret = "s"\n'
                  '    token_url = "http://idp/token"\n  }\n}\n'))


# ---------------------------------------------------------------- targets and series


def test_keep_dropped_targets_bounds_the_list_and_counts_all() -> None:
    async def go() -> None:
        drop = [Rule(action="drop", source_labels=["drop"], regex="yes")]
        pool = ScrapePool(cfg(relabel_rules=drop, keep_dropped_targets=2), Collector())
        pool.sync([L.from_dict({"__address__": f"10.0.0.{i}:80", "drop": "yes"}) for i in range(5)])
        assert len(pool.dropped_targets()) == 2 and pool.dropped_count == 5
        pool.update_config(cfg(relabel_rules=drop))  # 0: keep them all
        assert len(pool.dropped_targets()) == 5 and pool.dropped_count == 5
        await pool.stop()
    run(go())


OM = """# TYPE req_seconds histogram
# UNIT req_seconds seconds
# HELP req_seconds Request time.
req_seconds_bucket{le="1"} 1
req_seconds_bucket{le="+Inf"} 2
req_seconds_sum 3
req_seconds_count 2
# TYPE temp_celsius gauge
# UNIT temp_celsius celsius
temp_celsius 21
# TYPE things unknown
things 1
# EOF
"""


@pytest.mark.parametrize("text", [False, True])
def test_type_and_unit_labels_and_honor_metadata(text: bool) -> None:
    """__type__ and __unit__ from each series' family, before metric relabeling (a rule keeps
    only gauges); no metadata downstream unless honor_metadata."""
    body = OM if not text else "\n".join(
        ln for ln in OM.replace("things unknown", "things untyped").splitlines()
        if not ln.startswith(("# UNIT", "# EOF"))) + "\n"
    ctype = "application/openmetrics-text; version=1.0.0" if not text else "text/plain; version=0.0.4"

    async def go() -> None:
        target = Target(body=body, ctype=ctype)
        async with serve(target.app()) as port:
            got = {}
            for typed, honor in ((True, False), (False, True)):
                coll = Collector()
                keep = [Rule(action="drop", source_labels=["__type__"], regex="histogram")]
                pool = ScrapePool(cfg(type_and_unit_labels=typed, honor_metadata=honor,
                                      metric_relabel_rules=keep), coll)
                pool.sync([L.from_dict({"__address__": f"127.0.0.1:{port}"})])
                try:
                    await until(lambda c=coll: bool(ups(c)) and ups(c)[-1] == 1.0)
                finally:
                    await pool.stop()
                b = next(b for b in coll.batches if b.labels and len(b.labels) > 5)
                got[typed] = ({dict(lab)["__name__"]: (dict(lab).get("__type__"), dict(lab).get("__unit__"))
                               for lab in b.labels}, b.metadata)
            series, metadata = got[True]
            unit = None if text else "celsius"
            assert series["temp_celsius"] == ("gauge", unit)
            assert series["things"] == (None, None)
            assert "req_seconds_bucket" not in series and "req_seconds_count" not in series
            assert series["up"] == (None, None)
            assert metadata == {}
            series, metadata = got[False]
            assert series["req_seconds_bucket"] == (None, None)
            assert metadata["req_seconds"].type == "histogram"
    run(go())


def test_type_and_unit_labels_from_protobuf_families() -> None:
    """The protobuf parser records a family's metadata before its series: a counter's and
    a classic histogram's series get their family's __type__ (no UNIT in these payloads)."""
    exp = Exporter().start()
    try:
        serve_proto(exp, payload())
        coll = Collector()
        scrape(make_loop(exp.address, coll, type_and_unit_labels=True, scrape_native_histograms=True,
                         scrape_classic_histograms=True), T0)
        types = {dict(lab)["__name__"]: dict(lab).get("__type__") for lab in coll.batches[-1].labels}
        assert types["req_total"] == "counter"
        assert types["lat_seconds_bucket"] == types["lat_seconds_count"] == "histogram"
        assert types["up"] is None
        hist_labels = [dict(h[0]) for h in coll.batches[-1].histograms]
        assert hist_labels and all(h["__type__"] == "histogram" for h in hist_labels)
    finally:
        exp.stop()


def test_prometheus_scrape_oauth2_block_type_labels_and_metadata_end_to_end(tmp_path: Path) -> None:
    """The component's arguments reach the engine: the oauth2 block (client_secret a
    secret, shown as such by the API), enable_type_and_unit_labels, honor_metadata."""
    async def go() -> None:
        idp = Idp("svc", "pa55-s3cret")
        target = Target(body=OM, ctype="application/openmetrics-text; version=1.0.0", idp=idp)
        async with serve(idp.app()) as idp_port, serve(target.app()) as port:
            c = controller(tmp_path)
            await c.load(files(f'''
test.sink "s" {{ }}

prometheus.scrape "s" {{
  targets    = [{{"__address__" = "127.0.0.1:{port}"}}]
  forward_to = [test.sink.s.receiver]
  scrape_interval = "300ms"
  scrape_timeout  = "250ms"
  honor_metadata  = true
  enable_type_and_unit_labels = true
  oauth2 {{
    client_id     = "svc"
    client_secret = "pa55-s3cret"
    token_url     = "http://127.0.0.1:{idp_port}/token"
  }}
}}
'''))
            try:
                sink = c.node("test.sink.s").component.sink

                def temp() -> list[dict[str, str]]:
                    return [lab for lab, _, _ in sink.samples() if lab.get("__name__") == "temp_celsius"]

                await until(lambda: bool(temp()))
                assert temp()[0]["__type__"] == "gauge" and temp()[0]["__unit__"] == "celsius"
                assert idp.issued == ["tok-1"] and target.seen[-1] == "Bearer tok-1"
                assert any(b.metadata.get("temp_celsius") for b in sink.batches)
                args = c.node("prometheus.scrape.s").args
                assert "pa55-s3cret" not in repr(args)
            finally:
                await c.stop()
    run(go())
