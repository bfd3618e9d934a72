"""Serving the app with uvicorn inside the agent's own event loop.

The socket is bound before anything starts, so an address in use is a clean
error rather than an exit from inside a task; signals stay the agent's
(uvicorn would otherwise take SIGTERM for itself and skip our shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette


@dataclass(frozen=True, slots=True)
class HTTPInfo:
    """The HTTP service as components see it (``services.HTTP``).

    ``address`` is the listen address as configured (``--server.http.listen-addr``),
    which is what ``prometheus.exporter.self`` exports as its target, as Alloy does.
    """

    address: str


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def parse_listen_addr(addr: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6; an empty host listens on every address)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"invalid listen address {addr!r}: want host:port")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def bind(addr: str) -> socket.socket:
    host, port = parse_listen_addr(addr)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.setblocking(False)
    return sock


class HTTPServer:
    def __init__(self, app: Starlette, sock: socket.socket, tls: ssl.SSLContext | None = None) -> None:
        """``tls``: serve HTTPS with this context (peer TLS, ``--cluster.enable-tls``)."""
        self.sock = sock
        factory = None if tls is None else (lambda _config, _default: tls)
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=2,
                                ssl_context_factory=factory)
        self._server = _Server(config)
        self._task: asyncio.Task | None = None

    @property
    def address(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"{host}:{port}"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self.sock]), name="http-server")
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("HTTP server exited during startup")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
