"""What every component is: built from its arguments, run as one task, updated in place.

A component never restarts on reload: the controller calls ``update(args)``
with the new arguments instead, which is what keeps a remote-write WAL open
across configuration changes. ``run`` is cancelled on shutdown or removal; a
component releases what it holds in ``run``'s ``finally``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from agent.runtime.health import Health
from agent.runtime.services import Services


@dataclass(slots=True)
class Options:
    """What the runtime gives a component besides its arguments."""

    id: str
    name: str
    # Folder this component may keep state in: <storage.path>/<id>.
    data_path: Path
    # Publish new exports; dependants are re-evaluated if they changed.
    on_state_change: Callable[[Any], None]
    logger: Any
    # The component's own metrics registry: its series carry component_id on
    # /metrics and leave with the component. Hand it to the engines it drives.
    registry: CollectorRegistry
    # The process' shared services (runtime/services.py), reached by name.
    services: Services

    def set_exports(self, exports: Any) -> None:
        self.on_state_change(exports)

    def get_service(self, name: str) -> Any:
        """A shared service by name (``services.HTTP``, ...); ``ServiceNotFound`` if the process runs none."""
        return self.services.get(name)


class Component:
    """Base class with the defaults most components want."""

    def __init__(self, opts: Options, args: Any) -> None:
        self.opts = opts
        self.args = args

    async def run(self) -> None:
        """Runs until cancelled. The default has nothing to do in the background."""
        await asyncio.Event().wait()

    async def update(self, args: Any) -> None:
        self.args = args

    def current_health(self) -> Health | None:
        """Health the component itself reports (None: nothing to add to the runtime's view)."""
        return None

    def debug_info(self) -> Any:
        return None
