"""The scrape client against real servers: TLS, proxies, redirects, gzip, limits, chunked bodies, errors."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.httpconfig import HTTPClientConfig, TLSConfig
from tests.scrape.server import Collector, Exporter, ForwardProxy
from tests.scrape.test_loop import T0, make_loop, scrape

BODY = "".join(f'm{{i="{i}"}} {i}\n' for i in range(300))


@pytest.fixture
def exp() -> Iterator[Exporter]:
    e = Exporter().start()
    yield e
    e.stop()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, and a server certificate it signed for 127.0.0.1 and target.example."""
    d = tmp_path_factory.mktemp("certs")

    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
         "-keyout", "ca.key", "-out", "ca.pem")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=target", "-keyout", "server.key",
         "-out", "server.csr")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:target.example\n")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem")
    return {n: d / f for n, f in [("ca", "ca.pem"), ("cert", "server.pem"), ("key", "server.key")]}


@pytest.fixture
def tls_exp(certs: dict[str, Path]) -> Iterator[Exporter]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs["cert"], certs["key"])
    e = Exporter(tls=ctx).start()
    yield e
    e.stop()


def _https_loop(exp: Exporter, coll: Collector, tls: TLSConfig | None, **kw: object):  # noqa: ANN202
    return make_loop(exp.address, coll, scheme="https", http=HTTPClientConfig(tls_config=tls), **kw)


def test_https_with_ca_file(tls_exp: Exporter, certs: dict[str, Path]) -> None:
    tls_exp.set(body=BODY, gzip=True)
    coll = Collector()
    loop = _https_loop(tls_exp, coll, TLSConfig(ca_file=str(certs["ca"])))
    scrape(loop, T0, T0 + 5)
    assert coll.value("up") == 1.0, loop.status.last_error
    assert len(coll.by_name("m")) == 300
    assert len(tls_exp.requests) == 2


def test_https_unknown_ca_fails_and_insecure_skip_verify_passes(tls_exp: Exporter) -> None:
    tls_exp.set(body=BODY)
    coll = Collector()
    loop = _https_loop(tls_exp, coll, None)
    scrape(loop, T0)
    assert coll.value("up") == 0.0
    assert "certificate verify failed" in loop.status.last_error
    assert loop.status.last_error.startswith(f'Get "https://{tls_exp.address}/metrics": ')
    loop = _https_loop(tls_exp, coll, TLSConfig(insecure_skip_verify=True))
    scrape(loop, T0)
    assert coll.value("up") == 1.0, loop.status.last_error


def test_https_server_name(tls_exp: Exporter, certs: dict[str, Path]) -> None:
    tls_exp.set(body=BODY)
    coll = Collector()
    ok = _https_loop(tls_exp, coll, TLSConfig(ca_file=str(certs["ca"]), server_name="target.example"))
    scrape(ok, T0)
    assert coll.value("up") == 1.0, ok.status.last_error
    bad = _https_loop(tls_exp, coll, TLSConfig(ca_file=str(certs["ca"]), server_name="other.example"))
    scrape(bad, T0)
    assert coll.value("up") == 0.0 and "other.example" in bad.status.last_error


def test_http_proxy(exp: Exporter) -> None:
    exp.set(body=BODY, gzip=True)
    proxy = ForwardProxy().start()
    try:
        coll = Collector()
        http = HTTPClientConfig(proxy_url=proxy.url.replace("http://", "http://pu:pp@"))
        loop = make_loop(exp.address, coll, http=http)
        scrape(loop, T0)
        assert coll.value("up") == 1.0, loop.status.last_error
        assert len(coll.by_name("m")) == 300
        ((method, target, auth),) = proxy.requests
        assert (method, target) == ("GET", f"http://{exp.address}/metrics")
        assert auth.startswith("Basic ")  # credentials in the proxy URL go to the proxy only
        assert "proxy-authorization" not in exp.requests[-1][1]
    finally:
        proxy.stop()


def test_https_through_proxy_connect(tls_exp: Exporter, certs: dict[str, Path]) -> None:
    tls_exp.set(body=BODY)
    proxy = ForwardProxy().start()
    try:
        coll = Collector()
        http = HTTPClientConfig(proxy_url=proxy.url, tls_config=TLSConfig(ca_file=str(certs["ca"])))
        loop = make_loop(tls_exp.address, coll, scheme="https", http=http)
        scrape(loop, T0)
        assert coll.value("up") == 1.0, loop.status.last_error
        assert proxy.requests[0][:2] == ("CONNECT", tls_exp.address)
    finally:
        proxy.stop()


def test_redirects_followed_or_refused(exp: Exporter) -> None:
    exp.set("/metrics", status=302, location="/real")
    exp.set("/real", body=BODY)
    coll = Collector()
    loop = make_loop(exp.address, coll)
    scrape(loop, T0)
    assert coll.value("up") == 1.0, loop.status.last_error
    assert [p for p, _ in exp.requests] == ["/metrics", "/real"]
    loop = make_loop(exp.address, coll, http=HTTPClientConfig(follow_redirects=False))
    scrape(loop, T0)
    assert coll.value("up") == 0.0
    assert loop.status.last_error == "server returned HTTP status 302 Found"


def test_redirect_loop_stops(exp: Exporter) -> None:
    exp.set("/metrics", status=302, location="/metrics")
    coll = Collector()
    loop = make_loop(exp.address, coll)
    scrape(loop, T0)
    assert coll.value("up") == 0.0
    assert loop.status.last_error.endswith("stopped after 10 redirects")


def test_gzip_bomb_stops_at_body_size_limit(exp: Exporter) -> None:
    bomb = gzip.compress(b"a 1\n" * 5_000_000)  # 20 MB inflated from ~20 kB
    exp.set(body=b"", raw_gzip=bomb)
    coll = Collector()
    loop = make_loop(exp.address, coll, body_size_limit=1_000_000, extra_metrics=True)
    scrape(loop, T0)
    assert coll.value("up") == 0.0
    assert loop.status.last_error == "body size limit exceeded"
    assert coll.value("scrape_body_size_bytes") == -1.0


def test_gzip_under_the_limit_and_chunked(exp: Exporter) -> None:
    exp.set(body=BODY, gzip=True, chunked=True)
    coll = Collector()
    loop = make_loop(exp.address, coll, body_size_limit=len(BODY) + 1, extra_metrics=True)
    scrape(loop, T0)
    assert coll.value("up") == 1.0, loop.status.last_error
    assert coll.value("scrape_body_size_bytes") == float(len(BODY))
    exp.set(body=BODY, chunked=True)
    scrape(loop, T0 + 5)
    assert coll.value("up") == 1.0 and len(coll.by_name("m")) == 300


def test_corrupt_or_truncated_gzip(exp: Exporter) -> None:
    coll = Collector()
    loop = make_loop(exp.address, coll)
    exp.set(body=b"", raw_gzip=b"\x1f\x8b\x08\x00garbage-garbage")
    scrape(loop, T0)
    assert coll.value("up") == 0.0
    assert loop.status.last_error.startswith("error decoding response body: ")
    exp.set(body=b"", raw_gzip=gzip.compress(BODY.encode())[:-12])
    scrape(loop, T0 + 5)
    assert coll.value("up") == 0.0
    assert loop.status.last_error.startswith("error decoding response body: ")


def test_refused_connection_in_gos_words(exp: Exporter) -> None:
    from tests.scrape.server import free_port

    port = free_port()
    coll = Collector()
    loop = make_loop(f"127.0.0.1:{port}", coll)

    async def go() -> bool:
        await loop.scrape_and_report(T0)
        dialled_again = loop.scraper.client is not None  # aiohttp's session, made on first use
        await loop.scraper.close()
        return dialled_again

    dialled_again = asyncio.run(go())
    assert loop.status.last_error == (
        f'Get "http://127.0.0.1:{port}/metrics": dial tcp 127.0.0.1:{port}: connect: connection refused'
    )
    # Said by the lean client: the refused target was dialled once, not again through aiohttp.
    assert loop.scraper.raw is not None and not dialled_again


def test_keep_alive_reuses_one_connection(exp: Exporter) -> None:
    exp.set(body=BODY)
    coll = Collector()
    loop = make_loop(exp.address, coll)
    ports: list[int] = []
    orig = exp.routes["/metrics"]

    async def go() -> None:
        for i in range(3):
            await loop.scrape_and_report(T0 + 5 * i)
            stream = loop.scraper.raw._stream  # type: ignore[union-attr]  # the lean client's connection
            ports.append(stream.transport.get_extra_info("sockname")[1])
        await loop.scraper.close()

    import asyncio

    asyncio.run(go())
    assert orig is exp.routes["/metrics"]
    assert len(set(ports)) == 1


def test_unreadable_credentials_fail_the_scrape_until_the_file_is_fixed(exp: Exporter, tmp_path: Path) -> None:
    exp.set(body=BODY)
    token = tmp_path / "token"
    coll = Collector()
    loop = make_loop(exp.address, coll, http=HTTPClientConfig(bearer_token_file=str(token)))
    errors: list[str] = []

    def fix(i: int) -> None:
        errors.append(loop.status.last_error)
        if i == 1:
            token.write_bytes(b"\xff\xfe")  # not text
        else:
            token.write_text("tok\n")

    scrape(loop, T0, T0 + 5, T0 + 10, between=fix)
    assert errors == ["unable to read credentials: No such file or directory",
                      "unable to read credentials: not UTF-8 text"]
    assert [h["authorization"] for _, h in exp.requests] == ["Bearer tok"]  # nothing sent before
    assert coll.value("up") == 1.0
