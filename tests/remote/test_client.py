from __future__ import annotations

import asyncio
import email.utils
import random
import ssl
import subprocess

import pytest

from agent.httpconfig import BasicAuth, HTTPClientConfig, TLSConfig
from agent.remote import codec
from agent.remote.backoff import Backoff, parse_retry_after
from agent.remote.client import USER_AGENT, WriteClient, redact_url
from tests.remote.receiver import Receiver


def test_backoff_is_jittered_within_min_and_the_doubling_cap():
    b = Backoff(0.03, 5.0, random.Random(1))
    assert b.delay(1) == 0.03
    for attempt in range(2, 20):
        cap = min(5.0, 0.03 * 2 ** (attempt - 1))
        ds = [b.delay(attempt) for _ in range(200)]
        assert all(0.03 <= d <= cap for d in ds)
        if cap > 0.1:
            assert max(ds) - min(ds) > (cap - 0.03) / 4  # spread, not a fixed step
    assert Backoff(1.0, 0.5).delay(9) == 1.0  # max below min: min wins


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("7") == 7.0
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(30.0)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    for bad in (None, "", "soon", "-3", "1.5e3"):
        assert parse_retry_after(bad) is None


def test_redact_url():
    assert redact_url("https://u:secret@host:9/api?x=1") == "https://host:9/api?x=1"
    assert redact_url("http://h/api") == "http://h/api"


def _run(coro):
    return asyncio.run(coro)


def test_status_codes_are_classified_and_headers_sent():
    script = [
        (500, {}, b"boom"),
        (503, {"Retry-After": "2"}, b""),
        (429, {"Retry-After": "3"}, b"slow down"),
        (400, {}, b"out of order sample"),
        (404, {}, b""),
        (204, {}, b""),
    ]

    async def main():
        it = iter(script)
        rx = await Receiver(lambda _r: next(it)).start()
        http = HTTPClientConfig(basic_auth=BasicAuth("u", "pw"))
        c = WriteClient(rx.url, headers={"X-Scope-OrgID": "t1", "Content-Type": "text/plain"}, http=http)
        results = [await c.send(codec.compress(b""), attempt=i) for i in range(len(script))]
        await c.aclose()
        await rx.stop()
        return rx, results

    rx, results = _run(main())
    assert [r.outcome for r in results] == ["retry", "retry", "retry", "drop", "drop", "ok"]
    assert results[1].retry_after == 2.0 and results[2].retry_after == 3.0
    assert results[3].reason == "http_400" and "out of order" in results[3].detail
    h0, h1 = rx.requests[0].headers, rx.requests[1].headers
    assert h0["content-encoding"] == "snappy"
    assert h0["content-type"] == "application/x-protobuf"  # a user header cannot break the protocol
    assert h0["x-prometheus-remote-write-version"] == "0.1.0"
    assert h0["user-agent"] == USER_AGENT and h0["x-scope-orgid"] == "t1"
    assert h0["authorization"].startswith("Basic ")
    assert "retry-attempt" not in h0 and h1["retry-attempt"] == "1"


def test_429_is_dropped_when_retry_on_http_429_is_off():
    async def main():
        rx = await Receiver(lambda _r: (429, {}, b"")).start()
        c = WriteClient(rx.url, retry_on_http_429=False)
        r = await c.send(b"x")
        await c.aclose()
        await rx.stop()
        return r

    r = _run(main())
    assert (r.outcome, r.reason) == ("drop", "http_429")


def test_connection_refused_is_retried_and_credentials_stay_out_of_the_message():
    async def main():
        rx = await Receiver().start()
        url = rx.url.replace("http://", "http://user:hunter2@")
        await rx.stop()  # nothing listens there any more
        c = WriteClient(url, timeout=2)
        r = await c.send(b"x")
        await c.aclose()
        return r

    r = _run(main())
    assert r.outcome == "retry" and r.status == 0 and "hunter2" not in r.detail


def tls_server(tmp_path) -> tuple[str, ssl.SSLContext]:  # noqa: ANN001
    """A server's TLS context with a certificate for 127.0.0.1 and backend.example, and that certificate (its own CA)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:backend.example", "-keyout", str(key),
                    "-out", str(cert)],
                   check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return str(cert), ctx


def test_https_with_the_configured_ca_and_refused_without_it(tmp_path):
    cert, server_ctx = tls_server(tmp_path)

    async def main():
        rx = await Receiver().start(ssl=server_ctx)
        body = codec.compress(codec.encode_timeseries(codec.encode_labels((("__name__", "up"),)), 1_700_000_000_000,
                                                      1.0))
        trusted = WriteClient(rx.url, http=HTTPClientConfig(tls_config=TLSConfig(ca_file=cert)), timeout=5)
        ok = [await trusted.send(body) for _ in range(3)]  # the connection is kept and reused
        await trusted.aclose()
        untrusted = WriteClient(rx.url, timeout=5)
        bad = await untrusted.send(body)
        await untrusted.aclose()
        await rx.stop()
        return rx, ok, bad

    rx, ok, bad = _run(main())
    assert [r.outcome for r in ok] == ["ok"] * 3
    assert rx.accepted == [((("__name__", "up"),), 1_700_000_000_000, 1.0)] * 3
    assert bad.outcome == "retry" and bad.reason == "network" and "certificate" in bad.detail.lower()


def test_tls_server_name_is_what_the_certificate_is_checked_against(tmp_path):
    cert, server_ctx = tls_server(tmp_path)

    async def main():
        rx = await Receiver().start(ssl=server_ctx)
        results = []
        for name in ("backend.example", "other.example"):
            tls = TLSConfig(ca_file=cert, server_name=name)
            c = WriteClient(rx.url, http=HTTPClientConfig(tls_config=tls), timeout=5)
            results.append(await c.send(codec.compress(b"")))
            await c.aclose()
        await rx.stop()
        return results

    good, bad = _run(main())
    assert good.outcome == "ok"
    assert bad.outcome == "retry" and bad.reason == "network" and "other.example" in bad.detail


def test_unreadable_tls_files_fail_when_the_client_is_built(tmp_path):
    with pytest.raises(OSError):
        WriteClient("https://127.0.0.1:1/api/v1/write", http=HTTPClientConfig(
            tls_config=TLSConfig(ca_file=str(tmp_path / "missing.pem"))))


def test_bearer_token_file_missing_is_retried_and_each_rotation_is_sent(tmp_path):
    token = tmp_path / "token"

    async def main():
        rx = await Receiver().start()
        c = WriteClient(rx.url, http=HTTPClientConfig(bearer_token_file=str(token)), timeout=5)
        missing = await c.send(codec.compress(b""))
        token.write_bytes(b"\xff\xfe tok")
        garbled = await c.send(codec.compress(b""))
        sent = []
        for value in ("tok-1", "tok-2", "tok-3"):  # same length, rewritten in place within one mtime tick
            token.write_text(value + "\n")
            sent.append(await c.send(codec.compress(b"")))
        await c.aclose()
        await rx.stop()
        return rx, missing, garbled, sent

    rx, missing, garbled, sent = _run(main())
    assert missing.outcome == "retry" and missing.reason == "credentials"
    assert "No such file" in missing.detail and missing.status == 0
    assert garbled.outcome == "retry" and garbled.detail == "unable to read credentials: not UTF-8 text"
    assert [r.outcome for r in sent] == ["ok"] * 3
    assert [r.headers["authorization"] for r in rx.requests] == ["Bearer tok-1", "Bearer tok-2", "Bearer tok-3"]
