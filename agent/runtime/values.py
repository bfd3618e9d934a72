"""Between component objects and the language's values: exports as scope values, schema field names."""

from __future__ import annotations

import dataclasses
from typing import Any

from agent.syntax import decode


def schema_names(cls: type) -> set[str]:
    """The names a schema (an Arguments or Exports dataclass) has in the configuration language."""
    return {f.name for f in decode.schema_of(cls).fields}


def to_value(exports: Any) -> Any:
    """An exports object as the value other components see: an object keyed by Alloy names.

    Shallow on purpose: capsules (receivers) must stay the very same objects, and
    lists of targets are already language values.
    """
    if exports is None:
        return {}
    if isinstance(exports, dict):
        return dict(exports)
    if dataclasses.is_dataclass(exports):
        return {f.name: getattr(exports, f.attr_name) for f in decode.schema_of(type(exports)).fields}
    raise TypeError(f"exports must be a dataclass or dict, not {type(exports).__name__}")


def placeholder(exports_type: type | None) -> Any:
    """Exports standing in for a component not built yet, so a new config can be checked before it runs."""
    if exports_type is None:
        return {}
    return to_value(exports_type())


def body_fields(obj: Any) -> list[tuple[str, str, Any]]:
    """``(alloy_name, "attr" | "block", value)`` for each field of a decoded schema instance."""
    return [
        (f.name, f.kind, getattr(obj, f.attr_name))
        for f in decode.schema_of(type(obj)).fields
        if not f.attr_name.startswith("_")
    ]


def is_schema(obj: Any) -> bool:
    """Whether ``obj`` is an instance of a decode schema (any dataclass whose fields decode can read)."""
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        return False
    try:
        decode.schema_of(type(obj))
    except (TypeError, NameError):
        return False
    return True
