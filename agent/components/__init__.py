"""One module per Alloy component name, each a thin adapter over an engine.

A module registers its component with ``@register("prometheus.scrape",
Arguments, Exports)``; :func:`registry` imports them all and returns the
registry ``shoal run`` and ``shoal validate`` use.
"""

from __future__ import annotations

import importlib
import pkgutil

from agent.runtime.registry import DEFAULT, Registry, register

__all__ = ["register", "registry"]


def registry() -> Registry:
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
    return DEFAULT
