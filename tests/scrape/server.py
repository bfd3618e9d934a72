"""A real HTTP exporter for scrape tests: payloads per path, changeable between scrapes.

Runs ``http.server`` in a thread on a free 127.0.0.1 port and records every
request's headers, so tests can check what actually reached the target.
"""

from __future__ import annotations

import gzip
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from agent.labels import as_labels
from agent.storage import SampleBatch, is_stale_nan

PROTO_MEDIA = "application/vnd.google.protobuf"
PROTO_CONTENT_TYPE = (
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
)


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "text/plain; version=0.0.4"
    gzip: bool = False
    trickle: float = 0.0  # seconds between single bytes: a target that never finishes
    # Served instead of ``body`` when the request's Accept lists protobuf (a negotiating exporter).
    proto: bytes | None = None
    location: str = ""  # a redirect's target (with a 3xx status)
    raw_gzip: bytes | None = None  # sent as-is with Content-Encoding: gzip (bombs, corrupt streams)
    chunked: bool = False  # Transfer-Encoding: chunked instead of Content-Length


@dataclass
class Exporter:
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    tls: ssl.SSLContext | None = None  # serve HTTPS with this server context
    host: str = "127.0.0.1"

    @property
    def address(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def set(self, path: str = "/metrics", body: bytes | str = b"", **kw: object) -> None:
        if isinstance(body, str):
            body = body.encode()
        self.routes[path] = Route(body=body, **kw)  # type: ignore[arg-type]

    def start(self) -> Exporter:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                path = self.path.split("?", 1)[0]
                exporter.requests.append(
                    (self.path, {k.lower(): v for k, v in self.headers.items()})
                )
                r = exporter.routes.get(path)
                if r is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body, ctype = r.body, r.content_type
                if r.proto is not None and PROTO_MEDIA in self.headers.get("Accept", ""):
                    body, ctype = r.proto, PROTO_CONTENT_TYPE
                self.send_response(r.status)
                self.send_header("Content-Type", ctype)
                if r.location:
                    self.send_header("Location", r.location)
                if r.raw_gzip is not None:
                    body = r.raw_gzip
                    self.send_header("Content-Encoding", "gzip")
                elif r.gzip and "gzip" in self.headers.get("Accept-Encoding", ""):
                    body = gzip.compress(body)
                    self.send_header("Content-Encoding", "gzip")
                if r.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for i in range(0, len(body), 1000):
                        part = body[i : i + 1000]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    self.wfile.write(b"0\r\n\r\n")
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    if r.trickle:
                        for i in range(len(body)):
                            self.wfile.write(body[i : i + 1])
                            self.wfile.flush()
                            time.sleep(r.trickle)
                    else:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer((self.host, 0), Handler)
        self.server.daemon_threads = True
        if self.tls is not None:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def decoded(batch: SampleBatch) -> SampleBatch:
    """``batch`` with every label set as pairs: a scrape hands them on encoded (agent/labels.py)."""
    return SampleBatch(
        [as_labels(lb) for lb in batch.labels], batch.timestamps, batch.values, batch.metadata,
        [(as_labels(lb), t, h) for lb, t, h in batch.histograms],
        [(as_labels(lb), t, v, e) for lb, t, v, e in batch.exemplars],
    )


class Collector:
    """An in-memory Appendable: keeps every batch it is given, label sets decoded."""

    def __init__(self) -> None:
        self.batches: list[SampleBatch] = []

    def append(self, batch: SampleBatch) -> None:
        self.batches.append(decoded(batch))

    def samples(self, i: int = -1) -> dict[tuple, float]:
        b = self.batches[i]
        return dict(zip(b.labels, b.values, strict=True))

    def by_name(self, name: str, i: int = -1) -> dict[tuple, float]:
        return {k: v for k, v in self.samples(i).items() if dict(k).get("__name__") == name}

    def value(self, name: str, i: int = -1) -> float:
        vals = list(self.by_name(name, i).values())
        assert len(vals) == 1, (name, vals)
        return vals[0]

    def stale(self, i: int = -1) -> set[tuple]:
        b = self.batches[i]
        return {lab for lab, v in zip(b.labels, b.values, strict=True) if is_stale_nan(v)}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ForwardProxy:
    """A real HTTP forward proxy: absolute-form GETs relayed, CONNECT tunnels for HTTPS.

    Records each request line and its Proxy-Authorization header, so tests see
    that traffic went through it.
    """

    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (method, target, proxy auth)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ForwardProxy:
        import http.client
        import select
        import socket
        import urllib.parse

        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                proxy.requests.append(("GET", self.path, self.headers.get("Proxy-Authorization", "")))
                u = urllib.parse.urlsplit(self.path)
                conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=5)
                headers = {k: v for k, v in self.headers.items() if not k.lower().startswith("proxy-")}
                conn.request("GET", u.path + ("?" + u.query if u.query else ""), headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                conn.close()

            def do_CONNECT(self) -> None:  # noqa: N802 - http.server API
                proxy.requests.append(("CONNECT", self.path, self.headers.get("Proxy-Authorization", "")))
                host, _, port = self.path.rpartition(":")
                upstream = socket.create_connection((host, int(port)), timeout=5)
                self.send_response(200, "Connection established")
                self.end_headers()
                self.wfile.flush()
                socks = [self.connection, upstream]
                try:
                    while True:
                        ready, _, _ = select.select(socks, [], [], 5)
                        if not ready:
                            break
                        for s in ready:
                            data = s.recv(65536)
                            if not data:
                                return
                            (upstream if s is self.connection else self.connection).sendall(data)
                finally:
                    upstream.close()
                    self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
