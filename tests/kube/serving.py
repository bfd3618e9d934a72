"""One aiohttp handler served over TLS from its own thread and event loop, so a stand-in
works the same under a synchronous test, an async test (whose loop it never blocks) and a
load test; stopped and started again on the same port."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Self

from aiohttp import web

from tests.kube.certs import CertFiles

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ThreadedServer:
    def __init__(self, handler: Handler, certs: CertFiles, host: str = "127.0.0.1",
                 port: int = 0, name: str = "standin") -> None:
        self.handler = handler
        self.certs = certs
        self.host = host
        self.port = port
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.loop is not None

    def start(self) -> None:
        started = threading.Event()
        error: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self.loop = loop
            try:
                loop.run_until_complete(self._serve())
            except BaseException as e:  # reported to the starting thread
                error.append(e)
                started.set()
                loop.close()
                self.loop = None
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name=f"{self.name}:{self.port}",
                                        daemon=True)
        self._thread.start()
        started.wait()
        if error:
            raise error[0]

    async def _serve(self) -> None:
        app = web.Application(client_max_size=16 << 20)
        app.router.add_route("*", "/{tail:.*}", self.handler)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5,
                                     handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port,
                           ssl_context=self.certs.server_context(), reuse_address=True)
        await site.start()
        if self.port == 0:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self, before: Callable[[], None] | None = None) -> None:
        """Stop serving (after `before` runs on the server's loop); the port then refuses
        connections until start()."""
        loop, thread = self.loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            if before is not None:
                before()
            if self._runner is not None:
                await self._runner.cleanup()
            loop.stop()
        asyncio.run_coroutine_threadsafe(shutdown(), loop)
        thread.join(timeout=10)
        self.loop = self._thread = self._runner = None


class Served:
    """Start/stop/url for a stand-in that keeps its ThreadedServer in `_server`."""

    _server: ThreadedServer

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def host(self) -> str:
        return self._server.host

    def start(self) -> Self:
        self._server.start()
        return self

    def _before_stop(self) -> None:
        """Runs on the server's loop as it stops (cut streams that would hold it open)."""

    def stop(self) -> None:
        self._server.stop(before=self._before_stop)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
