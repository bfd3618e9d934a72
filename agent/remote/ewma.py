"""An exponentially weighted rate, as Prometheus' queue manager keeps for samples in and out.

Events are counted as they happen (``incr``, one addition) and turned into a
per-second rate once per ``tick``: the new rate is weighted ``alpha`` against
the previous one, so one quiet or busy interval moves the estimate without
throwing it around. The first tick takes the measured rate as it is.
"""

from __future__ import annotations


class EWMARate:
    __slots__ = ("alpha", "interval", "rate", "_pending", "_init")

    def __init__(self, alpha: float, interval: float) -> None:
        self.alpha = alpha
        self.interval = interval
        self.rate = 0.0
        self._pending = 0.0
        self._init = False

    def incr(self, n: float) -> None:
        self._pending += n

    def tick(self, elapsed: float | None = None) -> float:
        """Fold what was counted since the last tick (over ``elapsed`` seconds) into the rate."""
        span = elapsed if elapsed and elapsed > 0 else self.interval
        instant = self._pending / span
        self._pending = 0.0
        if self._init:
            self.rate += self.alpha * (instant - self.rate)
        else:
            self.rate = instant
            self._init = True
        return self.rate
