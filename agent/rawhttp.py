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

The bytes are parsed by httptools (llhttp, the parser aiohttp's own C
extension and Node.js use): framing, chunked encoding and header syntax
are not ours to get wrong; what is ours is the connection's life and
Go's wording of the errors a scrape reports.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import httptools

MAX_HEAD = 64 * 1024  # status line and headers; Go's default is 1 MB, exposition servers send a few hundred bytes


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.1 we can read; the message says what was wrong."""

    idle = False  # raised before any byte of an answer came: a kept connection the server dropped


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
        """Wait for more bytes (or the end of the connection, which leaves ``eof`` set)."""
        if self.eof:
            return
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def take(self) -> bytes:
        data = bytes(self.buf)
        self.buf.clear()
        return data


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


class _Answer:
    """httptools' callbacks for one answer: the head to a Response, the body to the sink."""

    __slots__ = ("body", "parser", "reason", "headers", "resp", "read_body", "done", "begun", "keep")

    def __init__(self, body: Body) -> None:
        self.body = body
        self.parser = httptools.HttpResponseParser(self)
        self.reason = ""
        self.headers: dict[str, str] = {}
        self.resp: Response | None = None
        self.read_body = True
        self.done = False
        self.keep = False  # read when the answer completes: llhttp resets it right after
        self.begun = 0  # messages begun: a second one means bytes nobody asked for

    def on_message_begin(self) -> None:
        self.begun += 1

    def on_status(self, reason: bytes) -> None:
        self.reason += reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        k = name.decode("latin-1").lower()
        v = value.strip(b" \t").decode("latin-1")
        self.headers[k] = f"{self.headers[k]}, {v}" if k in self.headers else v

    def on_headers_complete(self) -> None:
        if self.begun > 1:
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            raise ProtocolError(f"unexpected informational response {status}")
        self.resp = Response(status, self.reason, self.headers)
        self.read_body = self.body.head(self.resp)

    def on_body(self, data: bytes) -> None:
        if self.read_body and self.begun == 1:
            self.body.feed(data)

    def on_message_complete(self) -> None:
        if self.begun == 1:
            self.done = True
            self.keep = self.parser.should_keep_alive()

    def feed(self, data: bytes) -> None:
        """Parse ``data``; a ProtocolError in Go's words, or what the sink raised."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            raise (exc.__context__ or exc) from None
        except httptools.HttpParserError as exc:
            if self.done:
                return  # garbage after a whole answer: the answer stands, the connection goes
            raise ProtocolError(_go_words(str(exc))) from None

    def until_close(self) -> bool:
        """Whether the body is framed by the end of the connection (no length, not chunked)."""
        h = self.headers
        return "content-length" not in h and "transfer-encoding" not in h


def _go_words(llhttp: str) -> str:
    """llhttp's message behind the phrase Go's client uses for the same fault."""
    low = llhttp.lower()
    if "content-length" in low:
        phrase = "invalid Content-Length"
    elif "chunk" in low:
        phrase = "invalid chunk size"
    elif "header" in low:
        phrase = "malformed MIME header line"
    else:
        phrase = "malformed HTTP response"
    return f"{phrase} ({llhttp})"


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

        Raises ConnectError, ProtocolError, OSError, or what ``body`` raises. A kept connection
        the server closed while it sat idle (no byte of an answer received) is replaced once,
        as browsers and Go's client do.
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
        if s.buf or s.eof:  # bytes nobody asked for, or the server hung up: not a connection to reuse
            exc = ProtocolError("connection closed by the server")
            exc.idle = True
            raise exc
        s.transport.write(request)
        answer = _Answer(body)
        try:
            return await self._read(s, answer)
        finally:
            # The parser holds the answer as its protocol and the answer the parser: a cycle
            # that only the GC's oldest generation would free, holding the sink (a scrape's
            # whole decoded body) until then; measured +100 MiB RSS at 200 targets before.
            answer.parser = answer.body = None  # type: ignore[assignment]

    async def _read(self, s: _Stream, answer: _Answer) -> Response:
        seen = 0
        while not answer.done:
            if s.buf:
                data = s.take()
                seen += len(data)
                answer.feed(data)
                if answer.resp is None and seen > MAX_HEAD:
                    raise ProtocolError("response headers too large")
                if answer.resp is not None and not answer.read_body:
                    self.close()
                    return answer.resp
                continue
            if s.eof:
                if answer.resp is not None and answer.until_close():
                    self.close()  # the body ended with the connection, as it should
                    return answer.resp
                exc = ProtocolError("server disconnected" + (f": {s.error}" if s.error else ""))
                exc.idle = seen == 0
                raise exc
            await s.more()
        assert answer.resp is not None
        if not answer.keep or answer.begun > 1 or s.buf:
            self.close()
        return answer.resp
