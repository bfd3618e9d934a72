"""How many shards a queue wants: Prometheus' queue-manager arithmetic, kept in one pure function.

Every ``shard_update_interval`` the queue folds four counts into EWMA rates:
samples appended to the WAL (in), samples acknowledged (out), samples
dropped, and shard-seconds spent busy (a shard is busy from taking a batch
until its acknowledgement is durable). Then

    time_per_sample = busy / out
    desired = time_per_sample * (in * kept + 0.05 * backlog)

where ``backlog`` is the samples behind: (newest appended timestamp - newest
sent timestamp) * in * kept, so a queue that is behind asks for enough shards
to catch up 5 % of it per second. Changes within 30 % of the current count
are ignored (no flapping), a queue more than 10 s behind never scales down,
and nothing changes while sends are failing: more shards cannot help a
backend that is down, and the drain a reshard needs would never finish.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from agent.remote.ewma import EWMARate

TOLERANCE = 0.3
CATCHUP = 0.05
ALPHA = 0.2
NO_DOWNSHARD_BEHIND = 10.0  # seconds


def desired_shards(
    current: int,
    min_shards: int,
    max_shards: int,
    *,
    rate_in: float,
    rate_out: float,
    rate_dropped: float,
    busy: float,
    delay: float,
) -> int:
    """The shard count for these rates (per second) and ``delay`` (seconds behind)."""
    if rate_out <= 0:
        return current
    kept = rate_out / (rate_out + rate_dropped) if rate_dropped > 0 else 1.0
    pending = max(0.0, delay) * rate_in * kept
    time_per_sample = busy / rate_out
    want = math.ceil(time_per_sample * (rate_in * kept + CATCHUP * pending))
    if current * (1 - TOLERANCE) <= want <= current * (1 + TOLERANCE):
        return current
    if want < current and delay > NO_DOWNSHARD_BEHIND:
        return current
    return max(min_shards, min(max_shards, want))


@dataclass(slots=True)
class TunerInput:
    highest_appended: float  # seconds since epoch of the newest sample appended to the WAL
    highest_sent: float  # ... and of the newest sample this queue had acknowledged
    failing: bool  # the last send attempt failed, or nothing succeeded for a while


class ShardTuner:
    """The rates behind ``desired_shards``, fed by the queue and its shards."""

    def __init__(self, min_shards: int, max_shards: int, interval: float) -> None:
        self.min_shards = max(1, min_shards)
        self.max_shards = max(self.min_shards, max_shards)
        self.interval = interval
        self.samples_in = EWMARate(ALPHA, interval)
        self.samples_out = EWMARate(ALPHA, interval)
        self.samples_dropped = EWMARate(ALPHA, interval)
        self.busy = EWMARate(ALPHA, interval)
        self.last: dict[str, float] = {}

    def tick(self, current: int, elapsed: float, inp: TunerInput) -> int:
        rin = self.samples_in.tick(elapsed)
        rout = self.samples_out.tick(elapsed)
        rdrop = self.samples_dropped.tick(elapsed)
        busy = self.busy.tick(elapsed)
        delay = inp.highest_appended - inp.highest_sent if inp.highest_sent else 0.0
        want = desired_shards(current, self.min_shards, self.max_shards, rate_in=rin, rate_out=rout,
                              rate_dropped=rdrop, busy=busy, delay=delay)
        if not self.min_shards <= current <= self.max_shards:
            want = max(self.min_shards, min(self.max_shards, want))  # settings changed under us
        elif inp.failing:
            want = current
        self.last = {"rate_in": rin, "rate_out": rout, "rate_dropped": rdrop, "busy": busy, "delay": delay,
                     "desired": float(want)}
        return want
