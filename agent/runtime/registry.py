"""Component types by Alloy name: what a config block may instantiate.

A registry is a plain object (not only a global) so tests can register small
components of their own without leaking them into ``shoal run``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.runtime.values import schema_names


@dataclass(frozen=True, slots=True)
class ComponentType:
    """``name`` as written in config; ``arguments``/``exports`` are decode schemas (dataclasses)."""

    name: str
    arguments: type | None
    exports: type | None
    factory: Callable[..., Any]

    def export_names(self) -> set[str]:
        return schema_names(self.exports) if self.exports is not None else set()


class Registry:
    def __init__(self) -> None:
        self._types: dict[str, ComponentType] = {}

    def register(
        self, name: str, arguments: type | None = None, exports: type | None = None
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Class decorator: ``@register("prometheus.scrape", Arguments, Exports)``."""

        def deco(factory: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._types and self._types[name].factory is not factory:
                raise ValueError(f"component {name!r} registered twice")
            self._types[name] = ComponentType(name, arguments, exports, factory)
            return factory

        return deco

    def get(self, name: str) -> ComponentType | None:
        return self._types.get(name)

    def names(self) -> list[str]:
        return sorted(self._types)

    def has_namespace(self, first: str) -> bool:
        """Whether some component name starts with ``first.``; tells a typo'd component from a variable."""
        return any(n.split(".", 1)[0] == first for n in self._types)


# The registry `shoal run` uses; agent.components fills it on import.
DEFAULT = Registry()
register = DEFAULT.register
