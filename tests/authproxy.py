"""Real HTTP parts for tests of scrape credentials and proxies: an OAuth2 token endpoint
(client credentials by HTTP Basic, numbered tokens), a target that serves only the newest
token it issued, and a forwarding proxy that also opens CONNECT tunnels, each recording
what it was sent (aiohttp / asyncio servers on the test's event loop)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import AsyncIterator
from urllib.parse import quote_plus, urlsplit

from aiohttp import web


@contextlib.asynccontextmanager
async def serve(app: web.Application, host: str = "127.0.0.1",
                ctx: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0, ssl_context=ctx)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


class Idp:
    """A token endpoint: client credentials checked by HTTP Basic, numbered tokens."""

    def __init__(self, client: str, secret: str, expires_in: int = 3600) -> None:
        self.client, self.secret, self.expires_in = client, secret, expires_in
        self.issued: list[str] = []
        self.forms: list[dict[str, str]] = []

    async def token(self, req: web.Request) -> web.Response:
        form = dict(await req.post())
        self.forms.append({k: str(v) for k, v in form.items()})
        # golang.org/x/oauth2 query-escapes both before HTTP Basic ("my client" -> "my+client").
        pair = f"{quote_plus(self.client, safe='')}:{quote_plus(self.secret, safe='')}"
        want = "Basic " + base64.b64encode(pair.encode()).decode()
        if req.headers.get("Authorization") != want:
            return web.json_response({"error": "invalid_client"}, status=401)
        tok = f"tok-{len(self.issued) + 1}"
        self.issued.append(tok)
        return web.json_response({"access_token": tok, "token_type": "bearer", "expires_in": self.expires_in})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/token", self.token)
        return app


class Target:
    """A scrape target; with ``idp``, only the newest token it issued gets the metrics."""

    def __init__(self, body: str = "app_up 1\n", ctype: str = "text/plain; version=0.0.4",
                 idp: Idp | None = None) -> None:
        self.body, self.ctype, self.idp = body, ctype, idp
        self.seen: list[str] = []

    async def metrics(self, req: web.Request) -> web.Response:
        auth = req.headers.get("Authorization", "")
        self.seen.append(auth)
        if self.idp is not None and (not self.idp.issued or auth != f"Bearer {self.idp.issued[-1]}"):
            return web.Response(status=401, text="unauthorized\n")
        return web.Response(body=self.body.encode(), headers={"Content-Type": self.ctype})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self.metrics)
        return app


class Proxy:
    """A forwarding HTTP proxy: absolute-form requests are passed on, CONNECT opens a
    tunnel; each request line and its headers are recorded."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line, *rest = head.decode("latin-1").split("\r\n")
            method, target, version = line.split(" ")
            headers: dict[str, str] = {}
            for k, v in (h.split(": ", 1) for h in rest if h):
                # A header sent on several lines is recorded with its values joined by "\n",
                # which no single header line can hold.
                headers[k.lower()] = headers[k.lower()] + "\n" + v if k.lower() in headers else v
            self.seen.append((method, target, headers))
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                ur, uw = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                u = urlsplit(target)
                ur, uw = await asyncio.open_connection(u.hostname, u.port)
                origin = (u.path or "/") + (f"?{u.query}" if u.query else "")
                uw.write(head.replace(f"{method} {target} ".encode(), f"{method} {origin} ".encode(), 1))
            await asyncio.gather(_pipe(reader, uw), _pipe(ur, writer))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()


async def _pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            w.close()


