"""A real HTTP scrape target for end-to-end tests: a payload the test changes while it is scraped.

``Target`` serves one payload on every path from a threaded ``http.server``
on a loopback port. ``set`` swaps the payload (each swap bumps ``version``);
``stop`` makes the port refuse connections and also cuts the keep-alive
connections scrapers hold open, so a stopped target really stops answering;
``start`` brings it back on the same port, so its ``instance`` label is
unchanged. Every request is logged with the wall-clock time it arrived and
the payload version it was served, so a test can tell which scrape saw what.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Request:
    time: float  # time.time() when the request line arrived
    path: str
    headers: dict[str, str]  # lower-cased names
    version: int  # the payload version it was answered with
    client: str = ""  # the scraper's address (in network namespaces, which agent scraped)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # rebind the same port right after stop()

    def __init__(self, addr: tuple[str, int], owner: Target) -> None:
        self.owner = owner
        self.conns: set[socket.socket] = set()
        self.conns_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def process_request(self, request, client_address) -> None:  # noqa: ANN001 - socketserver API
        with self.conns_lock:
            self.conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:  # noqa: ANN001 - socketserver API
        with self.conns_lock:
            self.conns.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        with self.conns_lock:
            conns, self.conns = list(self.conns), set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as scrapers use it
    server: _Server

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        t = self.server.owner
        with t.lock:
            body, ctype, status, version, gz = t.body, t.content_type, t.status, t.version, t.gzip
            t.requests.append(
                Request(
                    time.time(), self.path, {k.lower(): v for k, v in self.headers.items()},
                    version, self.client_address[0],
                )
            )
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if gz and "gzip" in self.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body)
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:  # the scraper gave up, or stop() cut the connection
            pass


class Target:
    """One scrape target; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        body: bytes | str = b"",
        content_type: str = TEXT,
        *,
        gzip: bool = False,
        port: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        self.lock = threading.Lock()
        self.body = b""
        self.content_type = content_type
        self.status = 200
        self.gzip = gzip
        self.version = 0
        self.requests: deque[Request] = deque(maxlen=10_000)
        self.port = port
        self.host = host  # another address when scrapers run in network namespaces
        self._server: _Server | None = None
        self.set(body, content_type)

    @classmethod
    def from_file(cls, path: Path, content_type: str | None = None, **kw: object) -> Target:
        """A target serving a file; OpenMetrics for ``*.om.txt``, text 0.0.4 otherwise."""
        if content_type is None:
            content_type = OPENMETRICS if path.name.endswith(".om.txt") else TEXT
        return cls(path.read_bytes(), content_type, **kw)  # type: ignore[arg-type]

    # ------------------------------------------------------------ payload

    def set(self, body: bytes | str, content_type: str | None = None, status: int = 200) -> int:
        """Serve ``body`` from now on; returns the new payload version."""
        data = body.encode() if isinstance(body, str) else bytes(body)
        with self.lock:
            self.body = data
            if content_type is not None:
                self.content_type = content_type
            self.status = status
            self.version += 1
            return self.version

    def served(self, version: int) -> list[Request]:
        """The requests answered with payload ``version``."""
        with self.lock:
            return [r for r in self.requests if r.version == version]

    # ------------------------------------------------------------ lifecycle

    @property
    def address(self) -> str:
        """host:port, what goes into ``__address__`` (and so ``instance``)."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}/metrics"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> Target:
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), self)
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(
            target=server.serve_forever, args=(0.05,), name=f"target {self.port}", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        """Refuse new connections and cut the open ones; the port is kept for start()."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.cut_connections()

    def __enter__(self) -> Target:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
