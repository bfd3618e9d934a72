"""Top-level blocks that configure the agent rather than instantiate a component."""

from __future__ import annotations

from dataclasses import dataclass

from agent.logs import FORMATS, LEVELS
from agent.syntax.decode import attr


@dataclass
class LoggingSettings:
    """``logging { level = "info", format = "logfmt" }``, as Alloy spells it."""

    level: str = attr(default="info")
    format: str = attr(default="logfmt")

    def validate(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f'unknown log level "{self.level}"; use one of {", ".join(LEVELS)}')
        if self.format not in FORMATS:
            raise ValueError(f'unknown log format "{self.format}"; use one of {", ".join(FORMATS)}')


SCHEMAS: dict[str, type] = {"logging": LoggingSettings}
