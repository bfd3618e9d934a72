"""Component arguments, exports and debug info in the JSON shape of Alloy's web API.

A body is a list of ``{"name", "type": "attr", "value"}`` and
``{"name", "type": "block", "body"}`` entries; a value is ``{"type", "value"}``
with types null, number, string, bool, array, object (a list of
``{"key", "value"}``), function and capsule. Secrets are written as the string
``(secret)`` and their content is never read; an object the language does not
know is shown as a capsule by its type name only, because its ``repr`` might
hold credentials.
"""

from __future__ import annotations

import math
from typing import Any

from agent.runtime import values
from agent.syntax.value import Duration, Secret, is_function

SECRET = "(secret)"


def body(obj: Any) -> list[dict[str, Any]]:
    """A decoded schema instance (or a plain dict of attributes) as an Alloy body."""
    if obj is None:
        return []
    out: list[dict[str, Any]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append({"name": str(k), "type": "attr", "value": value(v)})
        return out
    if values.is_schema(obj):
        for name, kind, v in values.body_fields(obj):
            if kind == "block":
                items = v if isinstance(v, list) else [v]
                for item in items:
                    if item is not None:
                        out.append({"name": name, "type": "block", "body": body(item)})
            else:
                out.append({"name": name, "type": "attr", "value": value(v)})
        return out
    return [{"name": "value", "type": "attr", "value": value(obj)}]


def value(v: Any) -> dict[str, Any]:
    if v is None:
        return {"type": "null"}
    if isinstance(v, Secret):
        return {"type": "string", "value": SECRET}
    if isinstance(v, Duration):
        return {"type": "string", "value": str(v)}
    if isinstance(v, bool):
        return {"type": "bool", "value": v}
    if isinstance(v, int):
        return {"type": "number", "value": v}
    if isinstance(v, float):
        return {"type": "number", "value": v if math.isfinite(v) else str(v)}
    if isinstance(v, str):
        return {"type": "string", "value": v}
    if isinstance(v, list | tuple):
        return {"type": "array", "value": [value(x) for x in v]}
    if isinstance(v, dict):
        return {"type": "object", "value": [{"key": str(k), "value": value(x)} for k, x in v.items()]}
    if is_function(v):
        return {"type": "function", "value": "function"}
    if values.is_schema(v):
        return {"type": "object", "value": [{"key": n, "value": value(x)} for n, _, x in values.body_fields(v)]}
    return {"type": "capsule", "value": f"capsule(\"{type(v).__name__}\")"}

