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

One departure from Prometheus: no growth while the shards we have sat idle
for most of the last interval (busy less than ``MIN_UTILIZATION`` of the
shard count) and the reader never had to wait for a full shard. Prometheus
scales shards to hide network latency; when a queue is behind with idle
shards, what limits it is the reader, that is the CPU (the event loop is
saturated, and every send's busy time includes waiting for the loop), and
more shards only add per-shard work. Measured under the heavy load (200k
samples/s on one core): the formula asked for 20, then 46, then 50 shards
with 20 % of them busy.

Two more, for start-up: ``ShardTuner`` grows at most ``MAX_GROWTH`` times per
tick, and ticks every ``STARTUP_TICK`` seconds for its first ``STARTUP_TICKS``
ticks. The first interval's rates are the worst to extrapolate from (one shard
full while the first scrapes create every series, ~4 s of CPU under the heavy
load), and from them the formula asked for 25-50 shards at once; doubling
every 2 s reaches the 4-8 a steady heavy load uses within the first ten
seconds, and dozens only if the following ticks keep asking for them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from agent.remote.ewma import EWMARate

TOLERANCE = 0.3
CATCHUP = 0.05
ALPHA = 0.2
NO_DOWNSHARD_BEHIND = 10.0  # seconds
MIN_UTILIZATION = 0.5  # busy shard-seconds per shard below which growing cannot help
MAX_GROWTH = 2  # at most this many times the current shards after one tick
STARTUP_TICK = 2.0  # seconds between the first ticks (or shard_update_interval if shorter)
STARTUP_TICKS = 5


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
    busy_now: float | None = None,
    reader_waited: bool = False,
) -> int:
    """The shard count for these rates (per second) and ``delay`` (seconds behind).

    ``busy_now`` is the last interval's busy shard-seconds per second (not smoothed), and
    ``reader_waited`` whether the reader waited for a full shard in it: together they say
    whether the shards limit sending at all.
    """
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
    if want > current and busy_now is not None and busy_now < MIN_UTILIZATION * current and not reader_waited:
        return current  # idle shards: the bottleneck is elsewhere (CPU), more shards cannot help
    return max(min_shards, min(max_shards, want))


@dataclass(slots=True)
class TunerInput:
    highest_appended: float  # seconds since epoch of the newest sample appended to the WAL
    highest_sent: float  # ... and of the newest sample this queue had acknowledged
    failing: bool  # the last send attempt failed, or nothing succeeded for a while
    busy: float = 0.0  # shard-seconds spent busy since the last tick
    reader_waited: bool = False  # the reader waited for a full shard since the last tick


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
        self.ticks = 0

    def next_wait(self) -> float:
        """Seconds until the next tick: short ones first, so a queue ramps up in its first seconds."""
        if self.ticks < STARTUP_TICKS:
            return min(STARTUP_TICK, self.interval)
        return self.interval

    def tick(self, current: int, elapsed: float, inp: TunerInput) -> int:
        rin = self.samples_in.tick(elapsed)
        rout = self.samples_out.tick(elapsed)
        rdrop = self.samples_dropped.tick(elapsed)
        self.busy.incr(inp.busy)
        busy = self.busy.tick(elapsed)
        busy_now = inp.busy / elapsed if elapsed > 0 else None
        delay = inp.highest_appended - inp.highest_sent if inp.highest_sent else 0.0
        want = desired_shards(current, self.min_shards, self.max_shards, rate_in=rin, rate_out=rout,
                              rate_dropped=rdrop, busy=busy, delay=delay, busy_now=busy_now,
                              reader_waited=inp.reader_waited)
        self.ticks += 1
        formula = want
        want = min(want, max(current * MAX_GROWTH, self.min_shards))
        if not self.min_shards <= current <= self.max_shards:
            want = max(self.min_shards, min(self.max_shards, want))  # settings changed under us
        elif inp.failing:
            want = current
        self.last = {"rate_in": rin, "rate_out": rout, "rate_dropped": rdrop, "busy": busy, "busy_now": busy_now or 0.0,
                     "reader_waited": float(inp.reader_waited), "delay": delay,
                     "formula": float(formula), "desired": float(want)}
        return want
