"""Retry delays: exponential with full jitter, and the Retry-After header.

Full jitter (a uniform draw up to the exponential cap) spreads the retries of
many shards and many agents over the whole interval, so a backend that comes
back is not met by a synchronised wave. The draw has ``min_backoff`` as its
floor, so ``min_backoff`` keeps its meaning as the shortest wait.
"""

from __future__ import annotations

import email.utils
import random
import time


class Backoff:
    def __init__(self, min_backoff: float, max_backoff: float, rng: random.Random | None = None) -> None:
        self.min = max(0.0, min_backoff)
        self.max = max(self.min, max_backoff)
        self._rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        """The wait before retry number ``attempt`` (1 for the first retry)."""
        cap = min(self.max, self.min * (2 ** min(max(attempt - 1, 0), 62)))
        if cap <= self.min:
            return self.min
        return self._rng.uniform(self.min, cap)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or an HTTP date); None if absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)
