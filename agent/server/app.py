"""The agent's HTTP endpoints, as a Starlette app over the running controller."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from agent.runtime.controller import Controller
from agent.runtime.health import State
from agent.server import api, html, peers
from agent.syntax.diag import DiagnosticsError

# Reloads the configuration from disk; raises DiagnosticsError, already rendered with sources, to refuse.
Reloader = Callable[[], Awaitable[None]]


class ServerState:
    """What the endpoints need to know besides the graph."""

    def __init__(self) -> None:
        self.ready = False


def build_app(
    controller: Controller,
    reload: Reloader,
    registry: CollectorRegistry = REGISTRY,
    render_errors: Callable[[DiagnosticsError], str] = str,
) -> Starlette:
    state = ServerState()

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def ready(_: Request) -> Response:
        if state.ready:
            return PlainTextResponse("Alloy is ready.\n")
        return PlainTextResponse("Alloy is not ready.\n", status_code=503)

    async def healthy(_: Request) -> Response:
        bad = [n for n in controller.nodes() if n.health().state in (State.UNHEALTHY, State.EXITED)]
        if not bad:
            return PlainTextResponse("All Alloy components are healthy.\n")
        lines = "".join(f"{n.id}: {n.health().message}\n" for n in bad)
        return PlainTextResponse("unhealthy components:\n" + lines, status_code=500)

    async def do_reload(_: Request) -> Response:
        try:
            await reload()
        except DiagnosticsError as exc:
            return PlainTextResponse(render_errors(exc) + "\n", status_code=400)
        return PlainTextResponse("config reloaded\n")

    async def components(_: Request) -> Response:
        return JSONResponse(api.list_components(controller))

    async def component(request: Request) -> Response:
        node = controller.node(request.path_params["id"])
        if node is None:
            return PlainTextResponse("404 page not found\n", status_code=404)
        return JSONResponse(api.component_info(controller, node, detail=True))

    async def index(_: Request) -> Response:
        return HTMLResponse(html.index(controller))

    app = Starlette(
        routes=[
            Route("/metrics", metrics),
            Route("/-/ready", ready),
            Route("/-/healthy", healthy),
            Route("/-/reload", do_reload, methods=["POST", "GET"]),
            Route("/api/v0/web/components", components),
            Route("/api/v0/web/components/{id:path}", component),
            Route("/api/v0/web/peers", peers.peers(controller)),
            Route(peers.PUSH_PULL_PATH, peers.push_pull(controller), methods=["POST"]),
            Route("/", index),
        ]
    )
    app.state.shoal = state
    return app
