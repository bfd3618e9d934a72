"""A fault-injecting HTTP/1.1 reverse proxy, put between a remote-write client and a real backend.

Why it exists: the remote-write engine promises to survive a backend that
answers 500s, rate-limits with 429 + Retry-After, slows down, hangs, resets
connections, speaks garbage or disappears altogether, and to come back gently.
Those promises can only be tested against a real Prometheus/VictoriaMetrics
if something in the middle can break the conversation on demand, and count
exactly what the client did (rates, retries, headers) while it was broken.

Two ways to run it:

* in-process: ``with FaultProxy(upstream) as proxy:`` runs its own event loop
  in a daemon thread, so it works the same from synchronous pytest tests and
  from asyncio tests (the caller's loop is never involved; every method is
  thread-safe and returns quickly);
* as a process, so it outlives agents a crash test kills::

      python tests/faultproxy.py --listen 127.0.0.1:PORT --upstream URL --control-port P

  driven with ``FaultProxyClient(control_url)`` (same methods as
  ``FaultProxy``); ``with spawn(upstream, workdir) as proc:`` starts one in
  its own session and gives ``proc.url`` and ``proc.control`` (the client).

Faults (``kind``), each applied to the next ``count`` requests, for
``duration`` seconds, or until cleared (whichever ends first), optionally only
to requests for one ``path`` (e.g. "/api/v1/write"); faults are
consulted in the order they were set and the first live one takes a request,
so ``fault("status", status=500, count=3); fault("status", status=429, count=2)``
scripts a sequence:

* ``status``: answer ``status`` (with ``headers``, ``body`` and optionally
  ``retry_after``: seconds or an HTTP-date string, or ``retry_after_date_in``:
  seconds from the moment of answering, sent as an HTTP-date) without
  forwarding;
* ``latency``: wait ``delay`` seconds, then forward (``delay`` also works on
  every other kind, for a slow error);
* ``hang``: read the request and never answer (until the client gives up or
  the proxy stops);
* ``reset``: read the request, then close with SO_LINGER 0 so the client gets
  a real TCP RST;
* ``garbage``: read the request, answer bytes that are not HTTP, close;
* ``refuse``: close the listening socket (and, unless ``keep_connections``,
  reset the open keep-alive connections) so connects are refused; it is
  reopened on the same port when the fault's ``duration`` ends or it is
  cleared. ``count`` does not apply (a refused connection is never seen).

Control endpoint (on the proxy port, and on ``control_port`` which stays up
while refusing): ``POST /__fault`` with the fault as JSON, ``GET /__fault``,
``DELETE /__fault[?id=N]`` (clear), ``POST /__refuse`` ``{"duration": s}``,
``POST /__accept``, ``GET /__requests[?since=MONO]``, ``DELETE /__requests``,
``GET /__health``. Paths under ``/__`` are never forwarded, faulted or
recorded.

Every other request is recorded (``RequestRecord``): monotonic and wall time
of arrival, method, path, headers, body size, the outcome, the status
answered, whether it was forwarded, and a connection number (a new number is
a new TCP connection, which is how reconnect storms show). ``requests()``,
``count()``, ``retries()`` (requests carrying Retry-Attempt), ``rate()``,
``per_second()`` and ``wait_for()``/``await_for()`` take filters ``since``,
``until``, ``path``, ``method``, ``outcome``. Monotonic times are
CLOCK_MONOTONIC, which Linux shares between processes, so a test may compare
its own ``time.monotonic()`` with the records of a proxy process.

Robustness: bad requests get 400/413/431 and a closed connection, never an
exception out of the server; header size, header count, body size, response
size, connections, and the request log are all bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import email.utils
import itertools
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

log = logging.getLogger("faultproxy")

KINDS = ("status", "latency", "hang", "reset", "garbage", "refuse")
GARBAGE = b"\x00\xff\xfeSHOAL-FAULTPROXY: this is not HTTP \x1b[0m\x7f\r\n\r\n"

_HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-connection", "proxy-authenticate",
        "proxy-authorization", "te", "trailer", "trailers", "transfer-encoding", "upgrade",
        "host", "content-length", "expect",
    }
)
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_REASONS = {
    200: "OK", 204: "No Content", 400: "Bad Request", 404: "Not Found",
    405: "Method Not Allowed", 413: "Content Too Large", 415: "Unsupported Media Type",
    429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}


def http_date(at: float) -> str:
    """``at`` (a Unix time) as an IMF-fixdate, the form Retry-After dates take."""
    return email.utils.formatdate(at, usegmt=True)


# ---------------------------------------------------------------------------
# Faults and records


@dataclass
class Fault:
    kind: str
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    retry_after: float | str | None = None
    retry_after_date_in: float | None = None
    delay: float = 0.0
    count: int | None = None  # requests left; None = unlimited
    duration: float | None = None  # seconds from being set; None = until cleared
    keep_connections: bool = False  # refuse only
    path: str | None = None  # only requests to this path (without query) take the fault
    id: int = 0
    until: float | None = None  # monotonic deadline derived from duration
    hits: int = 0

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if not isinstance(self.status, int) or not 100 <= self.status <= 599:
            raise ValueError(f"status must be an integer 100..599, got {self.status!r}")
        if self.count is not None and (not isinstance(self.count, int) or self.count < 1):
            raise ValueError(f"count must be a positive integer, got {self.count!r}")
        if self.count is not None and self.kind == "refuse":
            raise ValueError("count does not apply to refuse (refused connections are never seen)")
        if self.retry_after is not None and (
            isinstance(self.retry_after, bool) or not isinstance(self.retry_after, int | float | str)
            or "\n" in str(self.retry_after) or "\r" in str(self.retry_after)
        ):
            raise ValueError(f"retry_after must be seconds or an HTTP-date string, got {self.retry_after!r}")
        for name in ("duration", "delay", "retry_after_date_in"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int | float) or v < 0):
                raise ValueError(f"{name} must be a non-negative number, got {v!r}")
        if not isinstance(self.headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()
        ):
            raise ValueError("headers must be an object of string to string")
        for k, v in self.headers.items():
            if not k or any(c not in _TOKEN for c in k.encode("latin-1", "replace")) or "\n" in v or "\r" in v:
                raise ValueError(f"invalid header {k!r}")
        if self.path is not None and (not isinstance(self.path, str) or not self.path.startswith("/")):
            raise ValueError(f"path must start with /, got {self.path!r}")
        if not isinstance(self.body, str):
            raise ValueError("body must be a string")

    def live(self, now: float) -> bool:
        if self.count is not None and self.count <= 0:
            return False
        return self.until is None or now < self.until

    def public(self) -> dict[str, Any]:
        d = asdict(self)
        d["remaining"] = None if self.until is None else max(0.0, self.until - time.monotonic())
        return d


_FAULT_FIELDS = {f for f in Fault.__dataclass_fields__ if f not in ("id", "until", "hits")}


def fault_from_json(obj: Any) -> Fault:
    if not isinstance(obj, dict):
        raise ValueError("the fault must be a JSON object")
    unknown = set(obj) - _FAULT_FIELDS
    if unknown:
        raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
    if "kind" not in obj:
        raise ValueError("the fault needs a kind")
    f = Fault(**obj)
    f.validate()
    return f


@dataclass
class RequestRecord:
    t: float  # time.monotonic() when the request was fully read
    wall: float  # time.time() at the same moment
    method: str
    path: str  # the request target as sent (path and query)
    headers: list[tuple[str, str]]
    body_size: int
    outcome: str = "pending"  # forwarded | status | hang | reset | garbage | upstream_error
    status: int = 0  # status answered to the client; 0 when no HTTP answer was given
    forwarded: bool = False
    fault_id: int = 0
    duration: float = 0.0  # from arrival to the end of the answer
    error: str = ""
    conn: int = 0  # which client connection (1, 2, ...): new connections show reconnects

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    @property
    def retry_attempt(self) -> int:
        v = self.header("Retry-Attempt")
        try:
            return int(v) if v is not None else 0
        except ValueError:
            return 0

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RequestRecord:
        d = dict(d)
        d["headers"] = [tuple(h) for h in d["headers"]]
        return cls(**d)


class RecordQueries:
    """Counting and rates over the request log, shared by the in-process proxy and the client."""

    def requests(self, **filters: Any) -> list[RequestRecord]:  # pragma: no cover - overridden
        raise NotImplementedError

    @staticmethod
    def _filter(
        records: list[RequestRecord],
        since: float | None = None,
        until: float | None = None,
        path: str | None = None,
        method: str | None = None,
        outcome: str | None = None,
    ) -> list[RequestRecord]:
        out = []
        for r in records:
            if since is not None and r.t < since:
                continue
            if until is not None and r.t >= until:
                continue
            if path is not None and not r.path.split("?", 1)[0] == path:
                continue
            if method is not None and r.method != method:
                continue
            if outcome is not None and r.outcome != outcome:
                continue
            out.append(r)
        return out

    def count(self, **filters: Any) -> int:
        return len(self.requests(**filters))

    def retries(self, **filters: Any) -> int:
        """Requests that carried a Retry-Attempt header (the client said it was retrying)."""
        return sum(1 for r in self.requests(**filters) if r.header("Retry-Attempt") is not None)

    def rate(self, since: float, until: float, **filters: Any) -> float:
        """Requests per second that arrived in [since, until) (monotonic times)."""
        if until <= since:
            raise ValueError("until must be after since")
        return self.count(since=since, until=until, **filters) / (until - since)

    def per_second(self, since: float, until: float, bucket: float = 1.0, **filters: Any) -> list[int]:
        """Request counts in consecutive ``bucket``-second slices of [since, until)."""
        n = max(1, int((until - since) / bucket + 0.999999))
        counts = [0] * n
        for r in self.requests(since=since, until=until, **filters):
            counts[min(n - 1, int((r.t - since) / bucket))] += 1
        return counts

    def wait_for(self, n: int, timeout: float = 10.0, **filters: Any) -> list[RequestRecord]:
        """Block until at least ``n`` matching requests have been recorded; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.requests(**filters)
            if len(got) >= n:
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(got)} of {n} requests matching {filters} within {timeout}s")
            time.sleep(0.02)

    async def await_for(self, n: int, timeout: float = 10.0, **filters: Any) -> list[RequestRecord]:
        """``wait_for`` for asyncio tests: polls without blocking the caller's loop."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.requests(**filters)
            if len(got) >= n:
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(got)} of {n} requests matching {filters} within {timeout}s")
            await asyncio.sleep(0.02)


# ---------------------------------------------------------------------------
# HTTP/1.1 parsing, bounded


class BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    @property
    def keep_alive(self) -> bool:
        conn = (self.header("Connection") or "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in conn
        return "close" not in conn


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 64 * 1024
    max_headers: int = 200
    max_body_bytes: int = 64 * 1024 * 1024
    max_response_bytes: int = 64 * 1024 * 1024
    max_connections: int = 512
    max_records: int = 200_000
    idle_timeout: float = 300.0  # for a request head, including idle time on a keep-alive connection
    body_timeout: float = 60.0
    upstream_timeout: float = 60.0


async def read_request(reader: asyncio.StreamReader, limits: Limits, writer: asyncio.StreamWriter) -> Request | None:
    """One request from the connection, or None on a clean end of the connection."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), limits.idle_timeout)
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise BadRequest(400, "connection closed in the middle of a request head") from None
        return None
    except asyncio.LimitOverrunError:
        raise BadRequest(431, f"request head larger than {limits.max_header_bytes} bytes") from None
    except TimeoutError:
        return None
    if len(head) > limits.max_header_bytes:
        raise BadRequest(431, f"request head larger than {limits.max_header_bytes} bytes")
    lines = head[:-4].split(b"\r\n")
    while lines and not lines[0]:  # tolerated: empty lines before a request
        lines.pop(0)
    if not lines:
        raise BadRequest(400, "empty request")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise BadRequest(400, "malformed request line")
    method_b, target_b, version_b = parts
    if not method_b or any(c not in _TOKEN for c in method_b):
        raise BadRequest(400, "malformed method")
    if version_b not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise BadRequest(400, "unsupported HTTP version")
    if not target_b.startswith(b"/") or any(c <= 0x20 or c == 0x7F for c in target_b):
        raise BadRequest(400, "malformed request target")
    if len(lines) - 1 > limits.max_headers:
        raise BadRequest(431, f"more than {limits.max_headers} header fields")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or any(c not in _TOKEN for c in name):
            raise BadRequest(400, "malformed header field")
        headers.append((name.decode("ascii"), value.strip(b" \t").decode("latin-1")))
    req = Request(method_b.decode("ascii"), target_b.decode("latin-1"), version_b.decode("ascii"), headers, b"")

    te = req.header("Transfer-Encoding")
    cls = {v.strip() for k, v in headers if k.lower() == "content-length"}
    if te is not None and cls:
        raise BadRequest(400, "both Transfer-Encoding and Content-Length")
    if (req.header("Expect") or "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if te is not None:
        if te.lower() != "chunked":
            raise BadRequest(400, f"unsupported Transfer-Encoding {te!r}")
        req.body = await asyncio.wait_for(_read_chunked(reader, limits), limits.body_timeout)
    elif cls:
        if len(cls) != 1:
            raise BadRequest(400, "conflicting Content-Length values")
        raw = cls.pop()
        if not raw.isdigit() or len(raw) > 18:
            raise BadRequest(400, "malformed Content-Length")
        n = int(raw)
        if n > limits.max_body_bytes:
            raise BadRequest(413, f"body larger than {limits.max_body_bytes} bytes")
        try:
            req.body = await asyncio.wait_for(reader.readexactly(n), limits.body_timeout)
        except asyncio.IncompleteReadError:
            raise BadRequest(400, "connection closed before the whole body arrived") from None
    return req


async def _read_chunked(reader: asyncio.StreamReader, limits: Limits) -> bytes:
    body = bytearray()
    try:
        while True:
            line = await reader.readuntil(b"\r\n")
            size_s = line[:-2].split(b";", 1)[0].strip()
            if not size_s or len(size_s) > 16:
                raise BadRequest(400, "malformed chunk size")
            try:
                size = int(size_s, 16)
            except ValueError:
                raise BadRequest(400, "malformed chunk size") from None
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers, ignored
                    pass
                return bytes(body)
            if len(body) + size > limits.max_body_bytes:
                raise BadRequest(413, f"body larger than {limits.max_body_bytes} bytes")
            body += await reader.readexactly(size)
            if await reader.readexactly(2) != b"\r\n":
                raise BadRequest(400, "malformed chunk")
    except asyncio.IncompleteReadError:
        raise BadRequest(400, "connection closed inside a chunked body") from None
    except asyncio.LimitOverrunError:
        raise BadRequest(400, "chunk line too long") from None


def render_response(
    status: int, headers: list[tuple[str, str]], body: bytes, *, head: bool = False, close: bool = False,
    reason: str | None = None,
) -> bytes:
    reason = reason or _REASONS.get(status, "Status")
    out = [f"HTTP/1.1 {status} {reason}\r\n"]
    for k, v in headers:
        out.append(f"{k}: {v}\r\n")
    if not (100 <= status < 200 or status in (204, 304)):
        out.append(f"Content-Length: {len(body)}\r\n")
    else:
        body = b""
    if close:
        out.append("Connection: close\r\n")
    out.append("\r\n")
    data = "".join(out).encode("latin-1")
    return data if head else data + body


# ---------------------------------------------------------------------------
# The proxy


class FaultProxy(RecordQueries):
    """The proxy, run on its own event loop in a background thread."""

    def __init__(
        self,
        upstream: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        control_port: int | None = None,
        limits: Limits | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"upstream must be an http(s) URL, got {upstream!r}")
        self.upstream = upstream.rstrip("/")
        self.host = host
        self.port = port
        self.control_port = control_port
        self.limits = limits or Limits()
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self._records: deque[RequestRecord] = deque(maxlen=self.limits.max_records)
        self._conns: set[asyncio.StreamWriter] = set()
        self._control_conns: set[asyncio.StreamWriter] = set()  # spared by refuse
        self._server: asyncio.Server | None = None
        self._control_server: asyncio.Server | None = None
        self._reopen: asyncio.TimerHandle | None = None
        self._refuse_id = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None
        self._stopping: asyncio.Event | None = None
        self.connections_accepted = 0
        self.connections_rejected = 0  # over max_connections

    # -- lifecycle ---------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def control_url(self) -> str:
        return f"http://{self.host}:{self.control_port or self.port}"

    def start(self) -> FaultProxy:
        if self._thread is not None:
            raise RuntimeError("already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="faultproxy", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._astart(), loop).result(10)
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._astop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        if not thread.is_alive():
            loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> FaultProxy:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    async def _astart(self) -> None:
        self._stopping = asyncio.Event()
        self._client = httpx.AsyncClient(
            timeout=self.limits.upstream_timeout, follow_redirects=False, trust_env=False,
            limits=httpx.Limits(max_connections=self.limits.max_connections),
        )
        await self._listen()
        if self.control_port is not None:
            self._control_server = await asyncio.start_server(
                self._handle_control_conn, self.host, self.control_port,
                limit=self.limits.max_header_bytes, reuse_address=True,
            )
            self.control_port = self._control_server.sockets[0].getsockname()[1]

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._handle_conn, self.host, self.port,
            limit=self.limits.max_header_bytes, reuse_address=True, backlog=512,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _astop(self) -> None:
        assert self._stopping is not None
        self._stopping.set()
        if self._reopen is not None:
            self._reopen.cancel()
        for srv in (self._server, self._control_server):
            if srv is not None:
                srv.close()
        self._server = self._control_server = None
        for w in list(self._conns):
            _abort(w)
        await asyncio.sleep(0)
        if self._client is not None:
            await self._client.aclose()

    # -- faults (thread-safe) ----------------------------------------------

    def fault(self, kind: str, **kw: Any) -> int:
        """Set a fault (see the module docstring); returns its id for ``clear(id)``."""
        f = fault_from_json({"kind": kind, **kw})
        return self.add_fault(f)

    def add_fault(self, f: Fault) -> int:
        fid = self._register(f)
        if f.kind == "refuse":
            self._run(self._arefuse(f))
        return fid

    def clear(self, fault_id: int | None = None) -> None:
        """Remove one fault, or all of them; once no refuse is left the port is reopened."""
        if not self._remove(fault_id):
            self._run(self._aaccept())

    def faults(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            return [f.public() for f in self._faults if f.live(now)]

    # Convenience spellings of the common faults.
    def fail(self, status: int = 503, **kw: Any) -> int:
        return self.fault("status", status=status, **kw)

    def delay(self, seconds: float, **kw: Any) -> int:
        return self.fault("latency", delay=seconds, **kw)

    def hang(self, **kw: Any) -> int:
        return self.fault("hang", **kw)

    def reset(self, **kw: Any) -> int:
        return self.fault("reset", **kw)

    def garbage(self, **kw: Any) -> int:
        return self.fault("garbage", **kw)

    def refuse(self, duration: float | None = None, keep_connections: bool = False) -> int:
        """Stop listening (connects are refused) for ``duration`` seconds or until ``accept()``."""
        return self.fault("refuse", duration=duration, keep_connections=keep_connections)

    def accept(self) -> None:
        """End every refuse fault and listen again on the same port (done when this returns)."""
        self._remove_refuse()
        self._run(self._aaccept())

    @property
    def listening(self) -> bool:
        return self._server is not None

    def _register(self, f: Fault) -> int:
        f.validate()
        with self._lock:
            f.id = next(self._ids)
            f.until = None if f.duration is None else time.monotonic() + f.duration
            self._faults.append(f)
        return f.id

    def _remove(self, fault_id: int | None) -> bool:
        """Drop faults; True when a refuse is still in force."""
        with self._lock:
            if fault_id is None:
                self._faults.clear()
            else:
                self._faults = [f for f in self._faults if f.id != fault_id]
            return any(f.kind == "refuse" for f in self._faults)

    def _remove_refuse(self) -> None:
        with self._lock:
            self._faults = [f for f in self._faults if f.kind != "refuse"]

    def _run(self, coro: Any) -> None:
        """Run a coroutine on the proxy's loop from any other thread, and wait for it."""
        loop = self._loop
        if loop is None:
            coro.close()
            raise RuntimeError("the proxy is not running")
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            coro.close()
            raise RuntimeError("FaultProxy methods must not be called from the proxy's own loop")
        asyncio.run_coroutine_threadsafe(coro, loop).result(10)

    async def _arefuse(self, f: Fault) -> None:
        if self._reopen is not None:
            self._reopen.cancel()
            self._reopen = None
        if self._server is not None:
            self._server.close()  # closes the listening sockets now; connects get ECONNREFUSED
            self._server = None
        if not f.keep_connections:
            for w in list(self._conns):
                if w not in self._control_conns:
                    _abort(w)
        if f.duration is not None:
            assert self._loop is not None
            self._reopen = self._loop.call_later(f.duration, self._reopen_after, f.id)

    def _reopen_after(self, fault_id: int) -> None:
        self._reopen = None
        if not self._remove(fault_id):
            assert self._loop is not None
            self._loop.create_task(self._aaccept()).add_done_callback(_log_task_error)

    async def _aaccept(self) -> None:
        if self._reopen is not None:
            self._reopen.cancel()
            self._reopen = None
        if self._server is None and self._stopping is not None and not self._stopping.is_set():
            await self._listen()

    def _take_fault(self, path: str) -> Fault | None:
        now = time.monotonic()
        with self._lock:
            self._faults = [f for f in self._faults if f.live(now) or f.kind == "refuse"]
            for f in self._faults:
                if f.kind == "refuse" or not f.live(now) or (f.path is not None and f.path != path):
                    continue
                if f.count is not None:
                    f.count -= 1
                f.hits += 1
                return f
        return None

    # -- the request log ----------------------------------------------------

    def requests(self, **filters: Any) -> list[RequestRecord]:
        """Copies of the recorded requests (in arrival order) that match the filters."""
        with self._lock:
            snapshot = [dataclasses.replace(r) for r in self._records]
        return self._filter(snapshot, **filters)

    def reset_log(self) -> None:
        with self._lock:
            self._records.clear()

    # -- connections --------------------------------------------------------

    async def _handle_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._serve(reader, writer, control_only=False)

    async def _handle_control_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._serve(reader, writer, control_only=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, control_only: bool) -> None:
        if len(self._conns) >= self.limits.max_connections:
            self.connections_rejected += 1
            _abort(writer)
            return
        self.connections_accepted += 1
        conn = self.connections_accepted
        self._conns.add(writer)
        if control_only:
            self._control_conns.add(writer)
        try:
            while True:
                try:
                    req = await read_request(reader, self.limits, writer)
                except BadRequest as exc:
                    writer.write(render_response(exc.status, [("Content-Type", "text/plain")],
                                                 exc.reason.encode() + b"\n", close=True))
                    await _drain(writer)
                    break
                except TimeoutError:
                    break
                if req is None:
                    break
                if req.target.startswith("/__"):
                    self._control_conns.add(writer)
                    try:
                        status, body = await self._control_request(req)
                    finally:
                        if not control_only:
                            self._control_conns.discard(writer)
                    writer.write(render_response(status, [("Content-Type", "application/json")], body,
                                                 close=not req.keep_alive))
                elif control_only:
                    writer.write(render_response(404, [("Content-Type", "text/plain")],
                                                 b"control port: only /__ paths\n", close=not req.keep_alive))
                else:
                    if not await self._proxy_request(req, reader, writer, conn):
                        return
                await _drain(writer)
                if not req.keep_alive:
                    break
        except (ConnectionError, OSError):
            pass
        except Exception:  # never let one connection take the server down
            log.exception("faultproxy: connection handler failed")
        finally:
            self._conns.discard(writer)
            self._control_conns.discard(writer)
            _close(writer)

    async def _proxy_request(
        self, req: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: int
    ) -> bool:
        """Answer one proxied request; False when the connection was handed over (hang/reset/garbage)."""
        rec = RequestRecord(time.monotonic(), time.time(), req.method, req.target, req.headers, len(req.body),
                            conn=conn)
        with self._lock:
            self._records.append(rec)
        f = self._take_fault(req.target.split("?", 1)[0])
        if f is not None:
            rec.fault_id = f.id
            if f.delay:
                await asyncio.sleep(f.delay)
        kind = f.kind if f is not None else "latency"
        head = req.method == "HEAD"
        close = not req.keep_alive
        if kind == "latency":
            writer.write(await self._forward(req, rec, close))
            return True
        if kind == "status":
            assert f is not None
            headers = [("Content-Type", "text/plain; charset=utf-8"), *f.headers.items()]
            if f.retry_after is not None:
                ra = f.retry_after
                headers.append(("Retry-After", str(int(ra)) if isinstance(ra, int | float) else ra))
            elif f.retry_after_date_in is not None:
                headers.append(("Retry-After", http_date(time.time() + f.retry_after_date_in)))
            self._finish(rec, outcome="status", status=f.status)
            writer.write(render_response(f.status, headers, f.body.encode(), head=head, close=close))
            return True
        # The record is complete before the client can observe anything, so a test
        # that reads the log right after its request failed sees the outcome.
        self._finish(rec, outcome=kind)
        if kind == "hang":
            await self._hang(reader)
            self._finish(rec)
        elif kind == "reset":
            _abort(writer)
        elif kind == "garbage":
            writer.write(GARBAGE)
            await _drain(writer)
        return False

    def _finish(self, rec: RequestRecord, **fields: Any) -> None:
        with self._lock:
            for k, v in fields.items():
                setattr(rec, k, v)
            rec.duration = time.monotonic() - rec.t

    async def _hang(self, reader: asyncio.StreamReader) -> None:
        """Hold the connection without answering until the client leaves or the proxy stops."""
        assert self._stopping is not None
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            while True:
                read = asyncio.ensure_future(reader.read(65536))
                done, _ = await asyncio.wait({read, stop}, return_when=asyncio.FIRST_COMPLETED)
                if stop in done:
                    read.cancel()
                    return
                if not read.result():
                    return
        finally:
            stop.cancel()

    async def _forward(self, req: Request, rec: RequestRecord, close: bool) -> bytes:
        """Send the request upstream; the answer to relay (502 when upstream failed)."""
        assert self._client is not None
        present = {k.lower() for k, _ in req.headers}
        headers = [(k, v) for k, v in req.headers if k.lower() not in _HOP_BY_HOP]
        try:
            built = self._client.build_request(req.method, self.upstream + req.target, headers=headers,
                                               content=req.body)
            for name in ("user-agent", "accept", "accept-encoding"):  # httpx's defaults, not the client's
                if name not in present and name in built.headers:
                    del built.headers[name]
            resp = await self._client.send(built, stream=True)
            try:
                body = bytearray()
                async for chunk in resp.aiter_raw():
                    body += chunk
                    if len(body) > self.limits.max_response_bytes:
                        raise ValueError(f"upstream answer larger than {self.limits.max_response_bytes} bytes")
            finally:
                await resp.aclose()
        except (httpx.HTTPError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            self._finish(rec, outcome="upstream_error", status=502, forwarded=True, error=error)
            return render_response(502, [("Content-Type", "text/plain")],
                                   f"faultproxy: upstream failed: {error}\n".encode(),
                                   head=req.method == "HEAD", close=close)
        out_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in resp.headers.raw
                       if k.decode("latin-1").lower() not in _HOP_BY_HOP]
        self._finish(rec, outcome="forwarded", status=resp.status_code, forwarded=True)
        return render_response(resp.status_code, out_headers, bytes(body), head=req.method == "HEAD",
                               close=close, reason=resp.reason_phrase or None)

    # -- control endpoint ----------------------------------------------------

    async def _control_request(self, req: Request) -> tuple[int, bytes]:
        parts = urlsplit(req.target)
        query = parse_qs(parts.query)
        try:
            status, obj = await self._control(req.method, parts.path, query, req.body)
        except (ValueError, TypeError, KeyError) as exc:
            status, obj = 400, {"error": str(exc)}
        return status, json.dumps(obj).encode() + b"\n"

    async def _control(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> tuple[int, Any]:
        def payload() -> Any:
            if not body.strip():
                return {}
            try:
                return json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ValueError(f"body is not JSON: {exc}") from None

        if path == "/__health":
            return 200, {"status": "ok", "listening": self.listening, "port": self.port}
        if path == "/__fault":
            if method == "POST":
                f = fault_from_json(payload())
                fid = self._register(f)
                if f.kind == "refuse":
                    await self._arefuse(f)
                return 200, {"id": fid}
            if method == "GET":
                return 200, {"faults": self.faults(), "listening": self.listening}
            if method == "DELETE":
                ids = query.get("id")
                if not self._remove(int(ids[0]) if ids else None):
                    await self._aaccept()
                return 200, {"cleared": True, "listening": self.listening}
        elif path == "/__refuse" and method == "POST":
            p = payload()
            if not isinstance(p, dict):
                raise ValueError("the body must be a JSON object")
            f = fault_from_json({"kind": "refuse", "duration": p.get("duration"),
                                 "keep_connections": bool(p.get("keep_connections", False))})
            fid = self._register(f)
            await self._arefuse(f)
            return 200, {"id": fid}
        elif path == "/__accept" and method == "POST":
            self._remove_refuse()
            await self._aaccept()
            return 200, {"listening": self.listening}
        elif path == "/__requests":
            if method == "GET":
                since = float(query["since"][0]) if "since" in query else None
                return 200, {"requests": [asdict(r) for r in self.requests(since=since)]}
            if method == "DELETE":
                self.reset_log()
                return 200, {"cleared": True}
        else:
            return 404, {"error": f"no control path {path}"}
        return 405, {"error": f"{method} not allowed on {path}"}


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()


async def _drain(writer: asyncio.StreamWriter) -> None:
    if not writer.is_closing():
        await writer.drain()


def _log_task_error(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("faultproxy: reopening the port failed: %r", task.exception())


# ---------------------------------------------------------------------------
# Driving a proxy in another process


class FaultProxyClient(RecordQueries):
    """The ``FaultProxy`` fault and record methods, over a proxy process's control port."""

    def __init__(self, control_url: str, url: str = "") -> None:
        self.control_url = control_url.rstrip("/")
        self.url = url
        self._http = httpx.Client(base_url=self.control_url, timeout=10, trust_env=False)

    def close(self) -> None:
        self._http.close()

    def _ok(self, resp: httpx.Response) -> Any:
        if resp.status_code != 200:
            raise ValueError(f"faultproxy control: {resp.status_code} {resp.text.strip()}")
        return resp.json()

    def fault(self, kind: str, **kw: Any) -> int:
        return self._ok(self._http.post("/__fault", json={"kind": kind, **kw}))["id"]

    def clear(self, fault_id: int | None = None) -> None:
        self._ok(self._http.delete("/__fault", params={} if fault_id is None else {"id": fault_id}))

    def faults(self) -> list[dict[str, Any]]:
        return self._ok(self._http.get("/__fault"))["faults"]

    def fail(self, status: int = 503, **kw: Any) -> int:
        return self.fault("status", status=status, **kw)

    def delay(self, seconds: float, **kw: Any) -> int:
        return self.fault("latency", delay=seconds, **kw)

    def hang(self, **kw: Any) -> int:
        return self.fault("hang", **kw)

    def reset(self, **kw: Any) -> int:
        return self.fault("reset", **kw)

    def garbage(self, **kw: Any) -> int:
        return self.fault("garbage", **kw)

    def refuse(self, duration: float | None = None, keep_connections: bool = False) -> int:
        return self.fault("refuse", duration=duration, keep_connections=keep_connections)

    def accept(self) -> None:
        self._ok(self._http.post("/__accept"))

    @property
    def listening(self) -> bool:
        return bool(self._ok(self._http.get("/__health"))["listening"])

    def requests(self, **filters: Any) -> list[RequestRecord]:
        since = filters.get("since")
        params = {} if since is None else {"since": repr(since)}
        recs = [RequestRecord.from_json(d) for d in self._ok(self._http.get("/__requests", params=params))["requests"]]
        return self._filter(recs, **filters)

    def reset_log(self) -> None:
        self._ok(self._http.delete("/__requests"))


@dataclass
class ProxyProcess:
    popen: subprocess.Popen
    url: str
    control: FaultProxyClient
    log: Path | None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.control.close()
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        return self.popen.returncode


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def spawn(upstream: str, workdir: Path | None = None, port: int | None = None) -> Iterator[ProxyProcess]:
    """Run the proxy as its own process (its own session, so killing an agent's group spares it)."""
    port = port or _free_port()
    cport = _free_port()
    logpath = workdir / "faultproxy.log" if workdir is not None else None
    out = open(logpath, "ab") if logpath is not None else subprocess.DEVNULL  # noqa: SIM115
    popen = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--listen", f"127.0.0.1:{port}",
         "--upstream", upstream, "--control-port", str(cport)],
        stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )
    if logpath is not None:
        out.close()  # type: ignore[union-attr]
    proc = ProxyProcess(popen, f"http://127.0.0.1:{port}", FaultProxyClient(f"http://127.0.0.1:{cport}",
                                                                           f"http://127.0.0.1:{port}"), logpath)
    try:
        deadline = time.monotonic() + 15
        while True:
            if popen.poll() is not None:
                raise RuntimeError(f"faultproxy exited with {popen.returncode} (log: {logpath})")
            try:
                if proc.control.listening:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("faultproxy did not start within 15s")
            time.sleep(0.05)
        yield proc
    finally:
        proc.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="A fault-injecting HTTP/1.1 reverse proxy for tests.")
    ap.add_argument("--listen", default="127.0.0.1:0", help="host:port to proxy on (port 0: any free port)")
    ap.add_argument("--upstream", required=True, help="base URL requests are forwarded to")
    ap.add_argument("--control-port", type=int, default=None,
                    help="a second port serving only the /__ control paths (stays up while refusing)")
    args = ap.parse_args(argv)
    host, _, port_s = args.listen.rpartition(":")
    if not host or not port_s.isdigit():
        ap.error(f"--listen must be host:port, got {args.listen!r}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    proxy = FaultProxy(args.upstream, host, int(port_s), control_port=args.control_port)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    proxy.start()
    print(f"faultproxy listening on {proxy.url} control {proxy.control_url} upstream {proxy.upstream}",
          flush=True)
    done.wait()
    proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
