"""The cluster of objects.yaml, by kind, and the look-ups the builders take."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from agent.discovery.roles import Lookups

OBJECTS = Path(__file__).with_name("objects.yaml")
# Corner cases, for the differential test.
EDGE_OBJECTS = Path(__file__).with_name("edge_objects.yaml")


def load(*paths: Path) -> dict[str, list[dict[str, Any]]]:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for obj in (o for p in paths or (OBJECTS,) for o in yaml.safe_load(p.read_text())):
        by_kind.setdefault(obj["kind"], []).append(obj)
    return by_kind


def key(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{meta['namespace']}/{meta['name']}" if "namespace" in meta else meta["name"]


def lookups(objs: dict[str, list[dict[str, Any]]], attach_node: bool = False,
            attach_namespace: bool = False) -> Lookups:
    return Lookups(
        nodes={key(n): n for n in objs["Node"]} if attach_node else None,
        namespaces={key(n): n for n in objs["Namespace"]} if attach_namespace else None,
        pods={key(p): p for p in objs["Pod"]},
        services={key(s): s for s in objs["Service"]},
    )


def named(objs: dict[str, list[dict[str, Any]]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objs[kind] if o["metadata"]["name"] == name)
