"""``discovery.file``: targets from JSON/YAML files, as Prometheus' ``file_sd_configs``.

Alloy's arguments (``files``, ``refresh_interval``); exports ``targets``.
A file that fails to read keeps its last good targets and makes the
component unhealthy with the file and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.discovery.file import FileDiscovery, Target
from agent.runtime.component import Component, Options
from agent.runtime.health import Health
from agent.runtime.registry import register
from agent.syntax.decode import attr
from agent.syntax.value import Duration


@dataclass
class Arguments:
    files: list[str] = attr(required=True)
    refresh_interval: Duration = attr(default=Duration("5m"))

    def validate(self) -> None:
        if self.refresh_interval <= 0:
            raise ValueError("refresh_interval must be greater than 0")


@dataclass
class Exports:
    targets: list[dict[str, str]] = attr(default=[])


@register("discovery.file", Arguments, Exports)
class DiscoveryFile(Component):
    def __init__(self, opts: Options, args: Arguments) -> None:
        super().__init__(opts, args)
        self.engine = FileDiscovery(
            args.files, float(args.refresh_interval), self._publish, registry=opts.registry
        )
        self.engine.refresh(full=True)

    def _publish(self, targets: list[Target]) -> None:
        self.opts.set_exports(Exports(targets=targets))

    async def run(self) -> None:
        await self.engine.run()

    async def update(self, args: Arguments) -> None:
        self.args = args
        await self.engine.update(args.files, float(args.refresh_interval))

    def current_health(self) -> Health | None:
        errors = self.engine.errors()
        if not errors:
            return None
        return Health.unhealthy(
            "; ".join(f"{path}: {reason} (keeping its last good targets)"
                      for path, reason in errors.items())
        )

    def debug_info(self) -> object:
        return {"files": self.engine.list_files(), "errors": self.engine.errors()}
