"""Component health as Alloy reports it: healthy, unhealthy with a message, or unknown."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum


class State(Enum):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    EXITED = "exited"


# Worse states win when a node combines its evaluation, run and component health.
_RANK = {State.HEALTHY: 0, State.UNKNOWN: 1, State.UNHEALTHY: 2, State.EXITED: 3}


@dataclass(frozen=True, slots=True)
class Health:
    state: State = State.UNKNOWN
    message: str = ""
    updated: float = field(default_factory=time.time)

    @classmethod
    def healthy(cls, message: str = "") -> Health:
        return cls(State.HEALTHY, message)

    @classmethod
    def unhealthy(cls, message: str) -> Health:
        return cls(State.UNHEALTHY, message)

    @classmethod
    def unknown(cls, message: str = "") -> Health:
        return cls(State.UNKNOWN, message)


def worst(*items: Health | None) -> Health:
    """The worst of several health reports; among equals, the most recent."""
    present = [h for h in items if h is not None]
    if not present:
        return Health()
    return max(present, key=lambda h: (_RANK[h.state], h.updated))
