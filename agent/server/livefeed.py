"""The live-debugging feed: the samples a target produced on its last scrape, for the Live page.

Registered as a service of the process (``services.LIVE_DEBUGGING``, Alloy's
live debugging), so ``prometheus.scrape`` reaches it by name without importing
the server. A component publishes only for the targets someone watches: a
watch lasts ``WATCH_SECONDS`` after the page last asked, so a closed browser tab
costs nothing after that, and one capture is bounded to ``MAX_SAMPLES`` rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from agent.labels import Labels

WATCH_SECONDS = 20.0
MAX_SAMPLES = 2_000


@dataclass(slots=True)
class Capture:
    time: float = 0.0
    samples: list[tuple[Labels, int, float]] = field(default_factory=list)  # (series, ts ms, value)
    truncated: bool = False


class LiveFeed:
    def __init__(self, watch_seconds: float = WATCH_SECONDS) -> None:
        self.watch_seconds = watch_seconds
        self._watches: dict[tuple[str, str], float] = {}  # (component, instance) -> expiry
        self._captures: dict[tuple[str, str], Capture] = {}

    def watch(self, component: str, instance: str) -> Capture | None:
        """Ask ``component`` to capture ``instance``'s scrapes from now on; the last capture so far."""
        key = (component, instance)
        self._watches[key] = time.monotonic() + self.watch_seconds
        return self._captures.get(key)

    def watched(self, component: str) -> set[str]:
        """The instances of ``component`` someone is watching (empty nearly always: then skip)."""
        if not self._watches:
            return set()
        now = time.monotonic()
        for key in [k for k, exp in self._watches.items() if exp < now]:
            del self._watches[key]
            self._captures.pop(key, None)
        return {inst for comp, inst in self._watches if comp == component}

    def publish(self, component: str, instance: str, samples: list[tuple[Labels, int, float]]) -> None:
        key = (component, instance)
        if key not in self._watches:
            return
        self._captures[key] = Capture(time.time(), samples[:MAX_SAMPLES], len(samples) > MAX_SAMPLES)

    def status(self) -> dict[str, Any]:
        return {"watches": [{"component": c, "instance": i} for c, i in self._watches]}
