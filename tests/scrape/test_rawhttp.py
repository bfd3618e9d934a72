"""The lean scrape client (agent/rawhttp.py) against raw sockets that answer as real servers can.

Each server here is a real TCP listener scripted byte by byte, for the framings
and connection behaviours an exposition server may use: until-close bodies,
``Connection: close``, a kept connection closed while idle, chunks split
anywhere, malformed answers, redirects to another port.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from agent.remote.client import WriteClient
from agent.scrape.config import ScrapeConfig
from agent.scrape.scraper import FetchError, Scraper
from tests.scrape.server import Exporter

Handler = Callable[[socket.socket, int], None]  # the accepted socket, the connection's index


class Scripted:
    """A listener whose every connection is handed to ``handler``; counts connections and requests."""

    def __init__(self, handler: Handler) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            i = self.connections
            self.connections += 1
            threading.Thread(target=self.handler, args=(conn, i), daemon=True).start()

    def read_request(self, conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            got = conn.recv(65536)
            if not got:
                return b""
            data += got
        self.requests.append(data)
        return data

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def scripted() -> Iterator[Callable[[Handler], Scripted]]:
    made: list[Scripted] = []

    def make(handler: Handler) -> Scripted:
        made.append(Scripted(handler))
        return made[-1]

    yield make
    for s in made:
        s.close()


def fetch_n(url: str, n: int, **cfg: object) -> list[tuple[bytes, str] | str]:
    """``n`` fetches on one Scraper: each the (body, content type) or the error's message."""

    async def go() -> list[tuple[bytes, str] | str]:
        s = Scraper(url, ScrapeConfig(**cfg), 5.0)  # type: ignore[arg-type]
        out: list[tuple[bytes, str] | str] = []
        try:
            for _ in range(n):
                try:
                    out.append(await s.fetch())
                except FetchError as exc:
                    out.append(str(exc))
        finally:
            await s.close()
        return out

    return asyncio.run(go())


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"


def test_body_until_close_and_connection_close_open_a_new_connection(scripted) -> None:  # noqa: ANN001
    def handler(conn: socket.socket, i: int) -> None:
        srv.read_request(conn)
        if i == 0:
            conn.sendall(HEAD + b"\r\na 1\n")  # no length: the body ends with the connection
        else:
            conn.sendall(HEAD + b"Content-Length: 4\r\nConnection: close\r\n\r\nb 2\n")
        conn.close()

    srv = scripted(handler)
    got = fetch_n(f"http://127.0.0.1:{srv.port}/metrics", 3)
    assert got == [(b"a 1\n", "text/plain; version=0.0.4"), (b"b 2\n", "text/plain; version=0.0.4"),
                   (b"b 2\n", "text/plain; version=0.0.4")]
    assert srv.connections == 3
    assert srv.requests[0].startswith(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % srv.port)
    assert b"\r\nAccept-Encoding: gzip\r\n" in srv.requests[0]


def test_kept_connection_closed_while_idle_is_replaced_once(scripted) -> None:  # noqa: ANN001
    body = gzip.compress(b"m 1\n" * 100)

    def handler(conn: socket.socket, i: int) -> None:
        srv.read_request(conn)
        conn.sendall(HEAD + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        conn.close()  # without saying so: the client finds out at its next request

    srv = scripted(handler)
    got = fetch_n(f"http://127.0.0.1:{srv.port}/metrics", 3)
    assert got == [(b"m 1\n" * 100, "text/plain; version=0.0.4")] * 3
    assert srv.connections == 3


def test_chunks_split_anywhere_with_trailers_then_the_connection_is_kept(scripted) -> None:  # noqa: ANN001
    wire = b"Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\na 1\nb\r\n3\r\n 2\n\r\n0\r\nX-Trailer: t\r\n\r\n"

    def handler(conn: socket.socket, i: int) -> None:
        while srv.read_request(conn):
            whole = HEAD + wire
            for k in range(0, len(whole), 7):  # 7-byte writes: every boundary falls somewhere odd
                conn.sendall(whole[k : k + 7])
        conn.close()

    srv = scripted(handler)
    got = fetch_n(f"http://127.0.0.1:{srv.port}/metrics", 3)
    assert got == [(b"a 1\nb 2\n", "text/plain; version=0.0.4")] * 3
    assert srv.connections == 1


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "malformed HTTP response"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed MIME header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "invalid chunk size"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "server disconnected"),
        (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", None),
    ],
)
def test_bad_answers_fail_the_scrape_with_a_reason(scripted, answer: bytes, reason: str | None) -> None:  # noqa: ANN001
    def handler(conn: socket.socket, i: int) -> None:
        srv.read_request(conn)
        conn.sendall(answer)
        conn.close()

    srv = scripted(handler)
    url = f"http://127.0.0.1:{srv.port}/metrics"
    (got,) = fetch_n(url, 1)
    if reason is None:
        assert got == "server returned HTTP status 503 Service Unavailable"
    else:
        assert isinstance(got, str) and got.startswith(f'Get "{url}": {reason}'), got


def test_redirect_to_another_port_is_followed_by_aiohttp(scripted) -> None:  # noqa: ANN001
    exp = Exporter().start()
    try:
        exp.set("/real", body="r 1\n")

        def handler(conn: socket.socket, i: int) -> None:
            while srv.read_request(conn):
                conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: http://%s/real\r\nContent-Length: 2\r\n\r\nhi"
                             % exp.address.encode())
            conn.close()

        srv = scripted(handler)
        got = fetch_n(f"http://127.0.0.1:{srv.port}/metrics", 1)
        assert got == [(b"r 1\n", "text/plain; version=0.0.4")]
        assert len(srv.requests) == 2  # the lean client's request, then aiohttp's from the start
        assert [p for p, _ in exp.requests] == ["/real"]
    finally:
        exp.stop()


def test_remote_write_posts_on_a_kept_connection_and_204_has_no_body(scripted) -> None:  # noqa: ANN001
    bodies: list[bytes] = []

    def handler(conn: socket.socket, i: int) -> None:
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                got = conn.recv(65536)
                if not got:
                    conn.close()
                    return
                buf += got
            head, _, buf = buf.partition(b"\r\n\r\n")
            srv.requests.append(head)
            n = int(next(ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")))
            while len(buf) < n:
                buf += conn.recv(65536)
            bodies.append(buf[:n])
            buf = buf[n:]
            if len(bodies) == 3:  # a 503 with a reason and a Retry-After, then the connection closes
                conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 4\r\n"
                             b"Connection: close\r\n\r\nbusy")
                conn.close()
                return
            conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n")  # no length: none follows

    srv = scripted(handler)

    async def go() -> list:
        c = WriteClient(f"http://127.0.0.1:{srv.port}/api/v1/write", headers={"content-type": "text/plain"})
        out = [await c.send(b"x" * k) for k in (1, 1000, 3, 5)]
        await c.aclose()
        return out

    r = asyncio.run(go())
    assert [x.outcome for x in r] == ["ok", "ok", "retry", "ok"]
    assert (r[2].status, r[2].retry_after) == (503, 7.0)
    assert r[2].detail == "server returned HTTP status 503 Service Unavailable: busy"
    assert bodies == [b"x", b"x" * 1000, b"xxx", b"x" * 5]
    assert srv.connections == 2  # three POSTs on the first, the fourth after the server closed it
    assert srv.requests[0].startswith(b"POST /api/v1/write HTTP/1.1\r\n")
    assert srv.requests[0].lower().count(b"content-type:") == 1  # the protocol's spelling wins, once
    assert b"Content-Type: application/x-protobuf\r\n" in srv.requests[0]
