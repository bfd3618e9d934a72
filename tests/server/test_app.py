"""The HTTP server, served for real by uvicorn on a loopback port and queried with httpx."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry

from agent.runtime import sources
from agent.runtime.controller import Controller
from agent.runtime.metrics import RuntimeCollector
from agent.server.app import build_app
from agent.server.http import HTTPServer, bind
from tests.runtime.components import make_registry

CONFIG = """
test.source "a" { value = "v1" }
test.pass "b" {
  input    = test.source.a.value
  password = "hunter2"
}
test.sick "s" { message = "disk full" }
"""


async def serve(tmp_path: Path, config: str):  # noqa: ANN201
    cfg = tmp_path / "main.alloy"
    cfg.write_text(config)
    controller = Controller(storage_path=tmp_path, registry=make_registry())
    state = {"sources": sources.read(cfg)}
    await controller.load(sources.parse(state["sources"]))

    async def reload() -> None:
        state["sources"] = sources.read(cfg)
        await controller.load(sources.parse(state["sources"]))

    registry = CollectorRegistry()
    registry.register(RuntimeCollector(controller))
    app = build_app(controller, reload, registry, lambda exc: sources.render_all(exc, state["sources"]))
    server = HTTPServer(app, bind("127.0.0.1:0"))
    await server.start()
    app.state.shoal.ready = True
    return controller, server, cfg


def test_endpoints(tmp_path):
    async def go():
        controller, server, cfg = await serve(tmp_path, CONFIG)
        try:
            async with httpx.AsyncClient(base_url=f"http://{server.address}") as http:
                r = await http.get("/-/ready")
                assert (r.status_code, r.text) == (200, "Alloy is ready.\n")
                r = await http.get("/-/healthy")
                assert r.status_code == 500 and "test.sick.s: disk full" in r.text

                r = await http.get("/api/v0/web/components")
                listing = {c["localID"]: c for c in r.json()}
                assert list(listing) == ["test.source.a", "test.pass.b", "test.sick.s"]
                b = listing["test.pass.b"]
                assert (b["name"], b["label"], b["moduleID"]) == ("test.pass", "b", "")
                assert b["referencesTo"] == ["test.source.a"]
                assert listing["test.source.a"]["referencedBy"] == ["test.pass.b"]
                assert b["health"]["state"] == "healthy" and b["health"]["updatedTime"].endswith("Z")
                assert "arguments" not in b

                r = await http.get("/api/v0/web/components/test.pass.b")
                detail = r.json()
                assert "hunter2" not in r.text
                args = {a["name"]: a for a in detail["arguments"]}
                assert args["password"] == {"name": "password", "type": "attr", "value": {"type": "string", "value": "(secret)"}}
                assert args["input"]["value"] == {"type": "string", "value": "v1"}
                assert detail["exports"] == [{"name": "value", "type": "attr", "value": {"type": "string", "value": "v1"}}]

                r = await http.get("/api/v0/web/components/test.sick.s")
                assert "hunter2" not in r.text
                assert {"name": "token", "type": "attr", "value": {"type": "string", "value": "(secret)"}} in r.json()["debugInfo"]
                assert (await http.get("/api/v0/web/components/nope.x")).status_code == 404

                r = await http.get("/metrics")
                assert "alloy_component_controller_evaluating 0.0" in r.text
                assert 'shoal_component_health{component_id="test.sick.s",component_name="test.sick",health_type="unhealthy"} 1.0' in r.text
                assert 'alloy_component_controller_running_components{health_type="healthy"} 2.0' in r.text

                r = await http.get("/")
                assert r.status_code == 200 and 'data-page="components"' in r.text
                assert (await http.get("/assets/ui.js")).status_code == 200
        finally:
            await controller.stop()
            await server.stop()

    asyncio.run(asyncio.wait_for(go(), 30))


def test_reload_endpoint_applies_good_config_and_refuses_broken_one(tmp_path):
    async def go():
        controller, server, cfg = await serve(tmp_path, CONFIG)
        try:
            async with httpx.AsyncClient(base_url=f"http://{server.address}") as http:
                b = controller.node("test.pass.b").component
                cfg.write_text(CONFIG.replace('"v1"', '"v2"'))
                r = await http.post("/-/reload")
                assert (r.status_code, r.text) == (200, "config reloaded\n")
                await controller.settle()
                assert controller.node("test.pass.b").component is b
                assert controller.node("test.pass.b").exports.value == "v2"

                cfg.write_text(CONFIG.replace('value = "v1"', 'value = "v3"\n  colour = 1'))
                r = await http.post("/-/reload")
                assert r.status_code == 400
                assert f'{cfg}:3:3: unrecognized attribute name "colour"' in r.text
                assert "^" in r.text  # the source line with a caret under the column
                assert controller.node("test.pass.b").exports.value == "v2"
                r = await http.get("/metrics")
                assert "alloy_config_last_load_successful 0.0" in r.text
        finally:
            await controller.stop()
            await server.stop()

    asyncio.run(asyncio.wait_for(go(), 30))
