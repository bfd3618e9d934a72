"""Component information in the shape of Alloy's ``/api/v0/web/components`` API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agent.runtime.controller import Controller, Node
from agent.server import alloyjson


def _time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def component_info(controller: Controller, node: Node, detail: bool) -> dict[str, Any]:
    health = node.health()
    info: dict[str, Any] = {
        "name": node.name,
        "type": "block",
        "localID": node.id,
        "moduleID": "",
        "label": node.decl.label,
        "referencesTo": sorted(node.decl.deps),
        "referencedBy": controller.graph.referenced_by().get(node.id, []),
        "health": {"state": health.state.value, "message": health.message, "updatedTime": _time(health.updated)},
        "original": "",
        "liveDebuggingEnabled": False,
    }
    if detail:
        info["arguments"] = alloyjson.body(node.args)
        info["exports"] = alloyjson.body(node.exports)
        info["debugInfo"] = alloyjson.body(node.debug_info())
    return info


def list_components(controller: Controller) -> list[dict[str, Any]]:
    return [component_info(controller, n, detail=False) for n in controller.nodes()]
