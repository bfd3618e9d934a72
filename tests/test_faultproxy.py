"""The fault proxy against a real Prometheus, seen from an httpx client.

The remote-write tests lean on this proxy to claim "the agent survives a 429
storm" or "the backlog drains gently", so each fault must really do what it
says on the wire: statuses and headers as set, a real RST, a real timeout, a
real refused connect, bytes no HTTP client accepts, and a request log whose
counts are exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import random
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.protowire import varint
from agent.remote.codec import compress
from tests.faultproxy import FaultProxy, Limits, spawn
from tests.procs import eventually, prometheus, query

pytestmark = pytest.mark.integration

HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": "faultproxy-test/1",
}


# -- a remote-write 1.0 body, by hand from the protobuf wire format ----------


def _field(num: int, payload: bytes) -> bytes:  # wire type 2, length-delimited
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def write_request(series: list[tuple[dict[str, str], float, int]]) -> bytes:
    """prometheus.WriteRequest{timeseries: [{labels, samples: [{value, timestamp}]}]}, snappy block."""
    msg = bytearray()
    for labels, value, ts in series:
        ts_msg = bytearray()
        for name in sorted(labels):
            ts_msg += _field(1, _field(1, name.encode()) + _field(2, labels[name].encode()))
        sample = varint(1 << 3 | 1) + struct.pack("<d", value) + varint(2 << 3 | 0) + varint(ts)
        ts_msg += _field(2, sample)
        msg += _field(1, bytes(ts_msg))
    return compress(bytes(msg))


def one_sample(name: str, value: float = 1.0) -> bytes:
    return write_request([({"__name__": name, "job": "faultproxy"}, value, int(time.time() * 1000))])


# -- fixtures ------------------------------------------------------------------


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with prometheus(tmp_path_factory.mktemp("prom")) as p:
        yield p.url


@pytest.fixture
def proxy(prom: str) -> Iterator[FaultProxy]:
    with FaultProxy(prom) as p:
        yield p


def post(url: str, body: bytes | None = None, timeout: float = 5.0, **headers: str) -> httpx.Response:
    return httpx.post(url + "/api/v1/write", content=body if body is not None else one_sample("fp_probe"),
                      headers={**HEADERS, **headers}, timeout=timeout)


# -- forwarding ------------------------------------------------------------------


def test_remote_write_reaches_prometheus_and_is_recorded(proxy: FaultProxy, prom: str) -> None:
    body = one_sample("fp_forwarded_total", 42.0)
    r = post(proxy.url, body, **{"Retry-Attempt": "1"})
    assert r.status_code == 204, r.text
    result = eventually(lambda: query(prom, 'fp_forwarded_total{job="faultproxy"}'))
    assert result[0]["value"][1] == "42"

    (rec,) = proxy.requests()
    assert (rec.method, rec.path, rec.status, rec.forwarded, rec.outcome) == (
        "POST", "/api/v1/write", 204, True, "forwarded")
    assert rec.body_size == len(body)
    assert rec.header("content-encoding") == "snappy"
    assert rec.header("User-Agent") == "faultproxy-test/1"
    assert rec.retry_attempt == 1
    # Reads are relayed too, body and all: the query API answers through the proxy.
    q = httpx.get(proxy.url + "/api/v1/query", params={"query": "fp_forwarded_total"}, timeout=5)
    assert q.json()["data"]["result"][0]["value"][1] == "42"
    assert proxy.count() == 2 and proxy.count(path="/api/v1/write") == 1


def test_upstream_rejection_is_relayed_unchanged(proxy: FaultProxy) -> None:
    r = post(proxy.url, b"not snappy at all")
    assert r.status_code == 400  # Prometheus' own answer
    assert "snappy" in r.text.lower() or "decode" in r.text.lower()
    (rec,) = proxy.requests()
    assert rec.forwarded and rec.status == 400


def test_chunked_request_body_is_forwarded(proxy: FaultProxy, prom: str) -> None:
    body = one_sample("fp_chunked_total", 7.0)

    def gen() -> Iterator[bytes]:
        yield body[:5]
        yield body[5:]

    r = httpx.post(proxy.url + "/api/v1/write", content=gen(), headers=HEADERS, timeout=5)
    assert r.status_code == 204, r.text
    assert proxy.requests()[0].header("Transfer-Encoding") == "chunked"
    assert proxy.requests()[0].body_size == len(body)
    assert eventually(lambda: query(prom, "fp_chunked_total"))[0]["value"][1] == "7"


# -- status faults and their scopes ---------------------------------------------------


def test_status_for_next_n_requests_then_forwarding(proxy: FaultProxy) -> None:
    proxy.fail(500, count=2)
    codes = [post(proxy.url, **({"Retry-Attempt": str(i)} if i else {})).status_code for i in range(4)]
    assert codes == [500, 500, 204, 204]
    recs = proxy.requests()
    assert [r.forwarded for r in recs] == [False, False, True, True]
    assert [r.outcome for r in recs] == ["status", "status", "forwarded", "forwarded"]
    assert proxy.retries() == 3
    assert proxy.count(outcome="status") == 2
    assert proxy.faults() == []


def test_faults_apply_in_the_order_they_were_set(proxy: FaultProxy) -> None:
    proxy.fail(503, count=2)
    proxy.fail(429, count=1, retry_after=3)
    proxy.fail(400, count=1, body="out of order sample")
    rs = [post(proxy.url) for _ in range(5)]
    assert [r.status_code for r in rs] == [503, 503, 429, 400, 204]
    assert rs[2].headers["Retry-After"] == "3"
    assert rs[3].text == "out of order sample"
    assert "Retry-After" not in rs[0].headers


def test_429_retry_after_as_http_date(proxy: FaultProxy) -> None:
    proxy.fail(429, count=1, retry_after_date_in=30)
    before = time.time()
    r = post(proxy.url)
    assert r.status_code == 429
    at = email.utils.parsedate_to_datetime(r.headers["Retry-After"]).timestamp()
    assert before + 20 < at < before + 60  # a date, in the future, about 30 s ahead
    proxy.fail(429, count=1, retry_after="Wed, 21 Oct 2037 07:28:00 GMT", headers={"X-Limit": "series"})
    r = post(proxy.url)
    assert r.headers["Retry-After"] == "Wed, 21 Oct 2037 07:28:00 GMT"
    assert r.headers["X-Limit"] == "series"


def test_status_until_cleared_and_for_a_time_window(proxy: FaultProxy) -> None:
    fid = proxy.fail(503)
    assert all(post(proxy.url).status_code == 503 for _ in range(5))
    assert proxy.faults()[0]["hits"] == 5
    proxy.clear(fid)
    assert post(proxy.url).status_code == 204

    proxy.fail(503, duration=0.5)
    assert post(proxy.url).status_code == 503
    eventually(lambda: post(proxy.url).status_code == 204, timeout=10, interval=0.05)
    assert proxy.faults() == []


def test_fault_scoped_to_a_path_and_connection_numbers(proxy: FaultProxy) -> None:
    proxy.fail(503, path="/api/v1/write")
    with httpx.Client(timeout=5) as c:  # one keep-alive connection for two requests
        assert c.get(proxy.url + "/-/ready").status_code == 200
        assert c.post(proxy.url + "/api/v1/write", content=one_sample("fp_path"), headers=HEADERS).status_code == 503
    assert post(proxy.url).status_code == 503
    recs = proxy.requests()
    assert [r.outcome for r in recs] == ["forwarded", "status", "status"]
    assert recs[0].conn == recs[1].conn != recs[2].conn


# -- latency, hang, reset, garbage, refuse ---------------------------------------------------


def test_latency_delays_then_forwards(proxy: FaultProxy) -> None:
    proxy.delay(0.3, count=1)
    t0 = time.monotonic()
    assert post(proxy.url).status_code == 204
    assert time.monotonic() - t0 >= 0.3
    rec = proxy.requests()[0]
    assert rec.forwarded and rec.duration >= 0.3
    proxy.delay(5, count=1)
    with pytest.raises(httpx.ReadTimeout):
        post(proxy.url, timeout=0.2)


def test_hang_is_a_black_hole(proxy: FaultProxy) -> None:
    proxy.hang()
    for _ in range(2):
        with pytest.raises(httpx.ReadTimeout):
            post(proxy.url, timeout=0.3)
    recs = proxy.requests()
    assert [(r.outcome, r.status, r.forwarded) for r in recs] == [("hang", 0, False)] * 2
    proxy.clear()
    assert post(proxy.url).status_code == 204


def test_reset_sends_a_real_rst(proxy: FaultProxy) -> None:
    proxy.reset(count=2)
    with pytest.raises(httpx.ReadError):
        post(proxy.url)
    # At the socket level: the read fails with ECONNRESET, not a clean end of stream.
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(b"POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        with pytest.raises(ConnectionResetError):
            s.recv(100)
    assert [r.outcome for r in proxy.requests()] == ["reset", "reset"]
    assert post(proxy.url).status_code == 204


def test_garbage_answer_is_a_protocol_error(proxy: FaultProxy) -> None:
    proxy.garbage(count=1)
    with pytest.raises(httpx.RemoteProtocolError):
        post(proxy.url)
    assert proxy.requests()[0].outcome == "garbage"
    assert post(proxy.url).status_code == 204


def test_refuse_closes_the_port_and_reopens_it(proxy: FaultProxy) -> None:
    with httpx.Client(timeout=5) as client:  # a keep-alive connection open across the refuse
        assert client.get(proxy.url + "/-/ready").status_code == 200
        port = proxy.port
        proxy.refuse()
        assert not proxy.listening
        with pytest.raises(httpx.ConnectError):
            post(proxy.url)
        with pytest.raises(httpx.TransportError):
            client.get(proxy.url + "/-/ready")
        proxy.accept()
        assert proxy.port == port and proxy.listening
        assert client.get(proxy.url + "/-/ready").status_code == 200
    assert post(proxy.url).status_code == 204

    proxy.refuse(duration=0.5)
    with pytest.raises(httpx.ConnectError):
        post(proxy.url)
    eventually(lambda: post(proxy.url).status_code == 204, timeout=10, interval=0.05)
    assert proxy.listening and proxy.faults() == []


# -- control endpoint, bad input, log queries ---------------------------------------------------


def test_control_endpoint(proxy: FaultProxy) -> None:
    c = httpx.Client(base_url=proxy.url, timeout=5)
    r = c.post("/__fault", json={"kind": "status", "status": 429, "retry_after": 9, "count": 1})
    assert r.status_code == 200
    fid = r.json()["id"]
    assert [f["id"] for f in c.get("/__fault").json()["faults"]] == [fid]
    r = post(proxy.url)
    assert (r.status_code, r.headers["Retry-After"]) == (429, "9")
    c.post("/__fault", json={"kind": "status", "status": 500})
    assert post(proxy.url).status_code == 500
    assert c.delete("/__fault").json()["cleared"]
    assert post(proxy.url).status_code == 204
    # Control traffic is not part of the log.
    recs = c.get("/__requests").json()["requests"]
    assert [x["status"] for x in recs] == [429, 500, 204]
    # Mistakes get a reason, not a crash.
    assert c.post("/__fault", content=b"{nope").status_code == 400
    bad = c.post("/__fault", json={"kind": "explode"})
    assert bad.status_code == 400 and "unknown fault kind" in bad.json()["error"]
    assert c.post("/__fault", json={"kind": "refuse", "count": 2}).status_code == 400
    assert c.post("/__fault", json={"kind": "status", "status": 99}).status_code == 400
    assert c.post("/__fault", json={"kind": "status", "colour": "red"}).status_code == 400
    assert c.get("/__nothing").status_code == 404
    assert c.get("/__health").json()["listening"]
    c.close()
    with pytest.raises(ValueError, match="unknown fault kind"):
        proxy.fault("explode")


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_bad_requests_are_answered_and_do_not_crash(prom: str) -> None:
    with FaultProxy(prom, limits=Limits(max_header_bytes=4096, max_body_bytes=1000)) as p:
        assert _raw(p.port, b"\x16\x03\x01\x02\x00garbage\r\n\r\n").startswith(b"HTTP/1.1 400")
        assert _raw(p.port, b"GET / HTTP/2.0\r\n\r\n").startswith(b"HTTP/1.1 400")
        assert _raw(p.port, b"GET / HTTP/1.1\r\nX: " + b"a" * 8000 + b"\r\n\r\n").startswith(b"HTTP/1.1 431")
        assert _raw(p.port, b"POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n").startswith(b"HTTP/1.1 413")
        assert _raw(p.port, b"POST / HTTP/1.1\r\nContent-Length: x1\r\n\r\n").startswith(b"HTTP/1.1 400")
        assert _raw(p.port, b"POST / HTTP/1.1\r\nContent-Length: 50\r\n\r\nshort").startswith(b"HTTP/1.1 400")
        assert _raw(p.port, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").startswith(
            b"HTTP/1.1 400")
        assert _raw(p.port, b"GET / HTTP/1.1\r\nno colon here\r\n\r\n").startswith(b"HTTP/1.1 400")
        assert _raw(p.port, b"GET /-/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(
            b"HTTP/1.1 200")
        assert p.count() == 1  # only the well-formed request was recorded
        # Two requests on one keep-alive connection are both answered.
        two = _raw(p.port, b"GET /-/ready HTTP/1.1\r\nHost: x\r\n\r\nGET /-/healthy HTTP/1.1\r\nHost: x\r\n"
                           b"Connection: close\r\n\r\n")
        assert two.count(b"HTTP/1.1 200") == 2
        # Random bytes, with and without an end of head: answered or dropped, never fatal.
        rnd = random.Random(5)
        for i in range(100):
            blob = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 2000)))
            with contextlib.suppress(OSError):
                _raw(p.port, blob + (b"\r\n\r\n" if i % 2 else b""))
        assert post(p.url).status_code == 204


def test_connections_are_bounded(prom: str) -> None:
    with FaultProxy(prom, limits=Limits(max_connections=2)) as p:
        p.hang()
        held = [socket.create_connection(("127.0.0.1", p.port), timeout=5) for _ in range(2)]
        for s in held:
            s.sendall(b"GET /-/ready HTTP/1.1\r\nHost: x\r\n\r\n")
        p.wait_for(2)
        with socket.create_connection(("127.0.0.1", p.port), timeout=5) as extra:
            extra.sendall(b"GET /-/ready HTTP/1.1\r\nHost: x\r\n\r\n")
            with pytest.raises(ConnectionResetError):
                extra.recv(100)
        assert p.connections_rejected == 1
        p.stop()  # hung connections are let go when the proxy stops
        for s in held:
            with contextlib.suppress(ConnectionResetError):
                assert s.recv(100) == b""
            s.close()


def test_upstream_down_answers_502(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # nothing listens here once the socket closes
    with FaultProxy(f"http://127.0.0.1:{dead}") as p:
        r = post(p.url)
        assert r.status_code == 502 and "upstream failed" in r.text
        assert p.requests()[0].outcome == "upstream_error"


def test_request_log_counts_and_rates(proxy: FaultProxy) -> None:
    t0 = time.monotonic()
    proxy.fail(500, count=3)
    for i in range(10):
        post(proxy.url, **({"Retry-Attempt": str(i)} if i % 2 else {}))
    httpx.get(proxy.url + "/-/ready", timeout=5)
    t1 = time.monotonic()
    assert proxy.count() == 11
    assert proxy.count(path="/api/v1/write") == 10 and proxy.count(method="GET") == 1
    assert proxy.count(outcome="status") == 3 and proxy.count(outcome="forwarded") == 8
    assert proxy.retries() == 5
    assert sum(proxy.per_second(t0, t1, bucket=0.1)) == 11
    assert proxy.rate(t0, t1) == pytest.approx(11 / (t1 - t0))
    recs = proxy.requests()
    assert all(t0 <= r.t <= t1 for r in recs) and recs == sorted(recs, key=lambda r: r.t)
    assert all(abs(r.wall - time.time()) < 60 for r in recs)
    mid = recs[5].t
    assert proxy.count(since=mid) == 6 and proxy.count(until=mid) == 5
    proxy.reset_log()
    assert proxy.count() == 0


def test_usable_from_asyncio(prom: str) -> None:
    async def main() -> list[int]:
        async with FaultProxy(prom) as p, httpx.AsyncClient(timeout=5) as client:
            p.fail(503, count=1)
            codes = [(await client.post(p.url + "/api/v1/write", content=one_sample("fp_async"),
                                        headers=HEADERS)).status_code for _ in range(2)]
            # Many concurrent requests on the caller's loop, all answered.
            # (one series each: Prometheus rejects one series' samples arriving out of order)
            rs = await asyncio.gather(*(client.post(p.url + "/api/v1/write", content=one_sample(f"fp_async_{i}"),
                                                    headers=HEADERS) for i in range(20)))
            codes += sorted({r.status_code for r in rs})
            await p.await_for(22)
            return codes

    assert asyncio.run(main()) == [503, 204, 204]


# -- as a separate process ---------------------------------------------------------------


def test_separate_process_driven_over_the_control_port(prom: str, tmp_path: Path) -> None:
    with spawn(prom, tmp_path) as proc:
        ctl = proc.control
        t0 = time.monotonic()
        ctl.fail(503, count=1, retry_after=2)
        r = post(proc.url)
        assert (r.status_code, r.headers["Retry-After"]) == (503, "2")
        assert post(proc.url).status_code == 204
        ctl.refuse()
        with pytest.raises(httpx.ConnectError):
            post(proc.url)
        assert not ctl.listening  # the control port stays up while the proxy port is closed
        ctl.accept()
        assert post(proc.url, **{"Retry-Attempt": "1"}).status_code == 204
        recs = ctl.requests()
        assert [r.status for r in recs] == [503, 204, 204]
        assert all(t0 <= r.t <= time.monotonic() for r in recs)  # CLOCK_MONOTONIC is machine-wide
        assert ctl.retries() == 1 and recs[0].header("User-Agent") == "faultproxy-test/1"
        ctl.hang()
        with pytest.raises(httpx.ReadTimeout):
            post(proc.url, timeout=0.3)
        ctl.clear()
        assert post(proc.url).status_code == 204
