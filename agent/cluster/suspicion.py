"""A suspicion timer that shrinks as independent members confirm it (Lifeguard).

A lone accuser waits the longest time, so one slow or partitioned prober cannot
get a healthy member declared dead quickly; each distinct confirming member
brings the deadline closer to the minimum along memberlist's logarithmic curve.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable


def remaining(confirmations: int, expected: int, elapsed: float, lo: float, hi: float) -> float:
    """Seconds left: hi - (hi - lo) * log(n + 1) / log(k + 1), never below lo, minus elapsed."""
    if expected < 1:
        return lo - elapsed
    frac = math.log(confirmations + 1) / math.log(expected + 1)
    return max(lo, hi - frac * (hi - lo)) - elapsed


class Suspicion:
    """The timer for one suspected member; fires ``on_timeout`` once unless cancelled."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        accuser: str,
        expected: int,
        lo: float,
        hi: float,
        on_timeout: Callable[[], None],
    ) -> None:
        self._loop = loop
        self._start = loop.time()
        self._expected = expected
        self._lo, self._hi = lo, hi
        self._confirmed: set[str] = {accuser}
        self._on_timeout = on_timeout
        first = hi if expected >= 1 else lo
        self._handle = loop.call_at(self._start + first, on_timeout)

    @property
    def confirmations(self) -> int:
        return len(self._confirmed) - 1

    def confirm(self, accuser: str) -> bool:
        """Count an independent confirmation; True if it was new (and so worth re-gossiping)."""
        if self.confirmations >= self._expected or accuser in self._confirmed:
            return False
        self._confirmed.add(accuser)
        self._handle.cancel()
        elapsed = self._loop.time() - self._start
        left = remaining(self.confirmations, self._expected, elapsed, self._lo, self._hi)
        self._handle = self._loop.call_later(max(left, 0.0), self._on_timeout)
        return True

    def cancel(self) -> None:
        self._handle.cancel()
