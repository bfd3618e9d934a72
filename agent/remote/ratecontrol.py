"""How fast one endpoint may be sent to: unlimited while healthy, AIMD after a failure.

While sends succeed nothing is limited: the queue keeps up with appends and
its request rate is whatever the scrapes produce (the *steady* rate, an EWMA
kept here). The first failure (5xx, 429, timeout, refused connection) starts
*recovery*: requests to the endpoint then pass a token gate whose rate starts
at half the steady rate, never below the floor (``FLOOR``, or one request
per ``max_backoff`` if that is more: the queue's choice), and is

- increased additively each second in which requests succeeded without a
  failure and without latency rising (``step``: a quarter of the steady rate,
  at least ``FLOOR``), and
- cut multiplicatively on a failure (halved) or on latency above
  ``LATENCY_FACTOR`` times the healthy baseline (times 0.7), at most once per
  second, so a burst of answers to requests sent together counts once.

The gaps between requests are drawn with full jitter (uniform between 0 and
twice the mean), so agents that see the backend return at the same moment
do not send in step. Recovery ends when the queue has caught up with the WAL
(the backlog is gone) for two consecutive seconds. The result: after an outage
the backlog is drained at a rate that starts near the steady rate and grows
only as long as the backend keeps answering quickly, so N agents reconnecting
at once put roughly N times their steady load on it, not N times their
backlog.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

from agent.remote.ewma import EWMARate

FLOOR = 0.5  # requests per second, the lowest rate in recovery
LATENCY_FACTOR = 3.0
LATENCY_SLACK = 0.1  # seconds: a latency rise smaller than this is noise
CALM_TICKS = 2


class SendRate:
    def __init__(self, rng: random.Random | None = None, floor: float = FLOOR) -> None:
        self.floor = floor
        self.limited = False
        self.rate = 0.0  # requests/s while limited
        self.steady = EWMARate(0.3, 1.0)
        self.baseline = 0.0  # EWMA of healthy request latency, seconds
        self.recoveries = 0
        self._rng = rng or random.Random()
        self._next = 0.0
        self._lock = asyncio.Lock()
        self._ok = 0
        self._failed = 0
        self._slow = 0
        self._last_cut = 0.0
        self._calm = 0

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait for permission to send one request; False if ``stop`` was set meanwhile."""
        if not self.limited:
            return True
        async with self._lock:
            while self.limited:
                wait = self._next - time.monotonic()
                if wait <= 0:
                    break
                try:
                    await asyncio.wait_for(stop.wait(), min(wait, 1.0))
                    return False
                except TimeoutError:
                    pass
            now = time.monotonic()
            if self.limited:
                self._next = max(now, self._next) + self._rng.uniform(0.0, 2.0) / max(self.rate, self.floor)
        return not stop.is_set()

    def observe(self, outcome: str, latency: float) -> None:
        """The answer to one request: "ok", "retry" (failed, will retry) or "drop" (rejected for good)."""
        now = time.monotonic()
        if outcome == "retry":
            self._failed += 1
            if not self.limited:
                self.limited = True
                self.recoveries += 1
                self.rate = max(self.floor, 0.5 * self.steady.rate)
                self._next = now
                self._calm = 0
            elif now - self._last_cut >= 1.0:
                self.rate = max(self.floor, self.rate / 2)
            self._last_cut = now
            return
        self._ok += 1
        if not self.limited:
            self.baseline = latency if self.baseline == 0 else self.baseline + 0.1 * (latency - self.baseline)
            return
        if self.baseline and latency > max(self.baseline * LATENCY_FACTOR, self.baseline + LATENCY_SLACK):
            self._slow += 1
            if now - self._last_cut >= 1.0:
                self.rate = max(self.floor, self.rate * 0.7)
                self._last_cut = now

    def tick(self, elapsed: float, caught_up: Callable[[], bool]) -> None:
        """Once a second: learn the steady rate, or grow the recovery rate, or end recovery."""
        ok, failed, slow = self._ok, self._failed, self._slow
        self._ok = self._failed = self._slow = 0
        if not self.limited:
            if not failed:
                self.steady.incr(ok)
                self.steady.tick(elapsed)
            return
        if ok and not failed and not slow:
            self.rate += max(self.floor, 0.25 * self.steady.rate) * elapsed
        if not failed and caught_up():
            self._calm += 1
            if self._calm >= CALM_TICKS:
                self.limited = False
        else:
            self._calm = 0

    def status(self) -> dict[str, float | bool]:
        return {"limited": self.limited, "rate": round(self.rate, 3) if self.limited else 0.0,
                "steady_rate": round(self.steady.rate, 3), "latency_baseline": round(self.baseline, 4),
                "recoveries": self.recoveries}
