"""The agent's HTTP endpoints, as a Starlette app over the running controller."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from agent.runtime.controller import Controller
from agent.runtime.health import State
from agent.server import api, debug, graphsvg, pages, peers
from agent.server.livefeed import LiveFeed
from agent.syntax.diag import DiagnosticsError

ASSETS = Path(__file__).parent / "assets"
MAX_BODY = debug.MAX_PLAYGROUND + 1_024

# Reloads the configuration from disk; raises DiagnosticsError, already rendered with sources, to refuse.
Reloader = Callable[[], Awaitable[None]]


class ServerState:
    """What the endpoints need to know besides the graph."""

    def __init__(self) -> None:
        self.ready = False
        # Set while the configuration on disk is refused and the last good one keeps running.
        self.config_error = ""


def build_app(
    controller: Controller,
    reload: Reloader,
    registry: CollectorRegistry = REGISTRY,
    render_errors: Callable[[DiagnosticsError], str] = str,
    prefix: str = "",
    live: LiveFeed | None = None,
) -> Starlette:
    """The app; the UI and ``/api/v0/web`` are served under ``prefix`` (``--server.http.ui-path-prefix``)."""
    state = ServerState()
    prefix = normalize_prefix(prefix)
    bad_input = Counter("shoal_ui_bad_requests", "Requests to the debug UI's API refused for bad input.",
                        ["endpoint"], registry=registry)

    def refuse(endpoint: str, exc: Exception, status: int = 400) -> Response:
        bad_input.labels(endpoint).inc()
        return JSONResponse({"error": str(exc)}, status_code=status)

    def number(request: Request, name: str, default: int) -> int:
        raw = request.query_params.get(name, "")
        if not raw:
            return default
        if not raw.isdigit() or len(raw) > 9:
            raise debug.BadInput(f"{name} must be a whole number, got {raw[:20]!r}")
        return int(raw)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def ready(_: Request) -> Response:
        if state.ready and state.config_error:
            return PlainTextResponse(
                "Alloy is ready.\nThe configuration on disk was refused; running the last good "
                "configuration:\n" + state.config_error + "\n"
            )
        if state.ready:
            return PlainTextResponse("Alloy is ready.\n")
        return PlainTextResponse("Alloy is not ready.\n", status_code=503)

    async def status(_: Request) -> Response:
        # What every page shows above its data: whether the configuration on disk was refused.
        return JSONResponse({"ready": state.ready, "configError": state.config_error})

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

    async def targets(request: Request) -> Response:
        try:
            q = request.query_params
            limit = number(request, "limit", 0) if q.get("limit") else None
            return JSONResponse(debug.targets_page(
                controller, q.get("q", ""), q.get("health", ""), number(request, "offset", 0), limit,
                job=q.get("job", ""), component=q.get("component", "")))
        except debug.BadInput as exc:
            return refuse("targets", exc)

    async def whynot(request: Request) -> Response:
        try:
            return JSONResponse(debug.why_not(controller, request.query_params.get("q", "")))
        except debug.BadInput as exc:
            return refuse("whynot", exc)

    async def remote_write(_: Request) -> Response:
        return JSONResponse(debug.remote_write(controller))

    async def graph(_: Request) -> Response:
        return Response(graphsvg.render(controller, prefix), media_type="image/svg+xml")

    async def relabel_list(_: Request) -> Response:
        return JSONResponse([{"component": n.id, "rules": len(n.args.rule)} for n in debug.relabel_components(controller)])

    async def relabel_run(request: Request) -> Response:
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY:
                return refuse("relabel", debug.BadInput(f"request body over {MAX_BODY} bytes"), 413)
        try:
            try:
                req = json.loads(raw)
            except ValueError as exc:
                raise debug.BadInput(f"the body is not JSON: {exc}") from None
            if not isinstance(req, dict) or not isinstance(req.get("labels"), str) or not isinstance(req.get("component"), str):
                raise debug.BadInput('want {"component": "<id>", "labels": "{name=\\"value\\"}"}')
            return JSONResponse(debug.playground(controller, req["component"], req["labels"]))
        except debug.BadInput as exc:
            return refuse("relabel", exc)

    async def live_samples(request: Request) -> Response:
        comp, inst = request.query_params.get("component", ""), request.query_params.get("instance", "")
        if live is None:
            return refuse("live", debug.BadInput("live debugging is not running in this process"), 404)
        node = controller.node(comp)
        if node is None or node.name != "prometheus.scrape" or not inst or len(inst) > debug.MAX_QUERY:
            return refuse("live", debug.BadInput("choose a running prometheus.scrape and a target instance"))
        cap = live.watch(comp, inst)
        if cap is None:
            return JSONResponse({"component": comp, "instance": inst, "samples": None})
        return JSONResponse({"component": comp, "instance": inst, "time": cap.time, "truncated": cap.truncated,
                             **debug.live_samples(controller, node, cap.samples)})

    def page(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            arg = request.path_params.get("id", "")
            if arg and controller.node(arg) is None:
                return PlainTextResponse("404 page not found\n", status_code=404)
            return HTMLResponse(pages.render(name, prefix, arg))
        return serve

    ui: list[BaseRoute] = [
        Route("/api/v0/web/components", components),
        Route("/api/v0/web/components/{id:path}", component),
        Route("/api/v0/web/targets", targets),
        Route("/api/v0/web/whynot", whynot),
        Route("/api/v0/web/remote_write", remote_write),
        Route("/api/v0/web/graph.svg", graph),
        Route("/api/v0/web/relabel", relabel_list, methods=["GET"]),
        Route("/api/v0/web/relabel", relabel_run, methods=["POST"]),
        Route("/api/v0/web/live", live_samples),
        Route("/api/v0/web/peers", peers.peers(controller)),
        Route("/api/v0/web/status", status),
        Mount("/assets", StaticFiles(directory=ASSETS), name="assets"),
        Route("/component/{id:path}", page("component")),
        *(Route("/" + p.path, page(name)) for name, p in pages.PAGES.items() if name != "component"),
    ]
    routes: list[BaseRoute] = [
        Route("/metrics", metrics),
        Route("/-/ready", ready),
        Route("/-/healthy", healthy),
        Route("/-/reload", do_reload, methods=["POST", "GET"]),
        # Cluster traffic goes to the agent itself, never through the UI's reverse proxy.
        Route(peers.PUSH_PULL_PATH, peers.push_pull(controller), methods=["POST"]),
    ]
    if prefix:
        routes += [Mount(prefix, routes=ui), Route("/", lambda _: RedirectResponse(prefix + "/"))]
    else:
        routes += ui
    app = Starlette(routes=routes)
    app.state.shoal = state
    return app


def normalize_prefix(prefix: str) -> str:
    """``/``, ``""``, ``shoal/`` and ``/shoal`` as ``""``, ``""``, ``/shoal``, ``/shoal``: no trailing slash."""
    prefix = prefix.strip().strip("/")
    return "/" + prefix if prefix else ""
