"""Plain HTTP/1.1 requests on kept-alive connections: scrapes and remote-write POSTs without aiohttp's fixed cost.

A scrape is the same small GET to the same target every interval, and a
remote-write send the same POST to the same backend, hundreds of times a
second under load. aiohttp's client spends ~120 us of CPU per request around
the body (session and connector bookkeeping, request and response objects,
header multidicts, a stream reader and its futures); measured on loopback
with the load test's 1,000-series body (gzip, one core): aiohttp ~210 us per
request, this ~90 us, both with the same inflate. That was about 3 % of the
agent's CPU under the heavy load test for scrapes, and ~5 % for sends.

It does only what those requests need: one request at a time per
connection, ``Content-Length``, chunked or until-close bodies, keep-alive,
one retry on a kept connection the server closed while idle. TLS, proxies,
URLs with credentials and redirects stay with aiohttp: callers use this only
for plain ``http://`` URLs without a proxy, and hand a redirect or a failed
dial to aiohttp. The body is handed to a sink as it arrives (the scraper's
inflater enforces the body size limit on the decoded bytes), so an endless
body stops at the limit here as with aiohttp.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Protocol

_HEX = re.compile(rb"[0-9a-fA-F]{1,16}")
MAX_HEAD = 64 * 1024  # status line and headers; Go's default is 1 MB, exposition servers send a few hundred bytes


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.1 we can read; the message says what was wrong."""


class _Stream(asyncio.Protocol):
    """Bytes received, and a future that the reader waits on until more come (or the end)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.eof = False
        self.error: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def more(self) -> None:
        """Wait for more bytes; ProtocolError if the connection ended first."""
        if self.eof:
            raise ProtocolError("server disconnected" + (f": {self.error}" if self.error else ""))
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None


class Response:
    """Status, reason and headers (names lower-cased, latin-1) of an answer whose body went to the sink."""

    __slots__ = ("status", "reason", "headers")

    def __init__(self, status: int, reason: str, headers: dict[str, str]) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers


class Body(Protocol):
    """Where an answer goes: ``head`` sees the status and headers (False: leave the body unread)."""

    def head(self, resp: Response) -> bool: ...

    def feed(self, data: bytes) -> None: ...


class ConnectError(Exception):
    """The connection could not be opened (``os_error`` says why); nothing was sent."""

    def __init__(self, os_error: OSError) -> None:
        super().__init__(str(os_error))
        self.os_error = os_error


class Connection:
    """One target's connection: opened on first use, kept between scrapes, closed on any doubt."""

    __slots__ = ("host", "port", "_stream")

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._stream: _Stream | None = None

    @property
    def open(self) -> bool:
        """Kept after the last answer, for the next request."""
        return self._stream is not None

    def close(self) -> None:
        s, self._stream = self._stream, None
        if s is not None and s.transport is not None:
            s.transport.close()

    async def get(self, request: bytes, body: Body) -> Response:
        """Send ``request`` (the whole request, head and body) and read the answer into ``body``.

        Raises ConnectError, ProtocolError, OSError, or what ``body`` raises. A kept connection the server closed while it sat idle (no
        byte of an answer received) is replaced once, as browsers and Go's client do for a GET.
        """
        reused = self._stream is not None
        try:
            if self._stream is None:
                await self._open()
            try:
                return await self._exchange(request, body)
            except (ProtocolError, ConnectionError) as exc:
                if not reused or not getattr(exc, "idle", False):
                    raise
            self.close()
            await self._open()
            return await self._exchange(request, body)
        except BaseException:
            self.close()  # cancelled (the scrape timeout) or failed: the connection's state is unknown
            raise

    async def _open(self) -> None:
        try:
            _, stream = await asyncio.get_running_loop().create_connection(_Stream, self.host, self.port)
        except OSError as exc:
            raise ConnectError(exc) from None
        self._stream = stream

    async def _exchange(self, request: bytes, body: Body) -> Response:
        s = self._stream
        assert s is not None and s.transport is not None
        buf = s.buf
        if buf or s.eof:  # bytes nobody asked for, or the server hung up: not a connection to reuse
            exc = ProtocolError("connection closed by the server")
            exc.idle = True  # type: ignore[attr-defined]
            raise exc
        s.transport.write(request)
        end = -1
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(buf) > MAX_HEAD:
                raise ProtocolError("response headers too large")
            try:
                await s.more()
            except ProtocolError as exc:
                exc.idle = not buf  # type: ignore[attr-defined]
                raise
        resp, keep = _parse_head(bytes(buf[:end]))
        del buf[: end + 4]
        if not body.head(resp):
            self.close()
            return resp
        sink = body.feed
        te = resp.headers.get("transfer-encoding")
        if resp.status in (204, 304):
            pass  # no body, whatever the headers say (RFC 9112 6.3)
        elif te is not None and te.lower() != "identity":
            if te.lower() != "chunked":
                raise ProtocolError(f"unsupported transfer encoding {te!r}")
            await _chunked(s, sink)
        elif "content-length" in resp.headers:
            length = resp.headers["content-length"]
            if not (length.isascii() and length.isdigit()):
                raise ProtocolError("invalid Content-Length")
            await _copy(s, sink, int(length))
        else:  # the body ends with the connection
            keep = False
            while True:
                if buf:
                    sink(bytes(buf))
                    buf.clear()
                if s.eof:
                    break
                await s.more()
        if not keep or buf:
            self.close()
        return resp


def _parse_head(head: bytes) -> tuple[Response, bool]:
    """The status line and headers; whether the connection may be kept after this answer."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0") or len(parts[1]) != 3:
        raise ProtocolError(f"malformed HTTP response {lines[0][:64]!r}")
    try:
        status = int(parts[1])
    except ValueError:
        raise ProtocolError(f"malformed HTTP status code {parts[1]!r}") from None
    reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise ProtocolError(f"malformed MIME header line {line[:64]!r}")
        k = name.decode("latin-1").lower()
        v = value.strip(b" \t").decode("latin-1")
        headers[k] = f"{headers[k]}, {v}" if k in headers else v
    conn = headers.get("connection", "").lower()
    keep = "close" not in conn if parts[0] == b"HTTP/1.1" else "keep-alive" in conn
    if 100 <= status < 200:
        raise ProtocolError(f"unexpected informational response {status}")
    return Response(status, reason, headers), keep


async def _copy(s: _Stream, sink: Callable[[bytes], None], left: int) -> None:
    """The next ``left`` bytes to ``sink``, as they arrive."""
    buf = s.buf
    while True:
        take = min(left, len(buf))
        if take:
            sink(bytes(buf[:take]))
            del buf[:take]
            left -= take
        if not left:
            return
        await s.more()


async def _chunked(s: _Stream, sink: Callable[[bytes], None]) -> None:
    """A chunked body to ``sink``; trailers read and dropped."""
    buf = s.buf
    while True:
        while (nl := buf.find(b"\r\n")) < 0:
            if len(buf) > MAX_HEAD:
                raise ProtocolError("chunk header too long")
            await s.more()
        size_text = bytes(buf[:nl]).split(b";", 1)[0].strip()
        if not _HEX.fullmatch(size_text):
            raise ProtocolError(f"invalid chunk size {size_text[:32]!r}")
        size = int(size_text, 16)
        del buf[: nl + 2]
        if size == 0:
            break
        await _copy(s, sink, size)
        while len(buf) < 2:
            await s.more()
        if buf[:2] != b"\r\n":
            raise ProtocolError("malformed chunk end")
        del buf[:2]
    while True:  # trailer lines until the empty one
        while (nl := buf.find(b"\r\n")) < 0:
            if len(buf) > MAX_HEAD:
                raise ProtocolError("trailers too long")
            await s.more()
        del buf[: nl + 2]
        if nl == 0:
            return
