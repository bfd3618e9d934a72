"""How fast one endpoint may be sent to: unlimited while healthy, AIMD after a failure.

While sends succeed nothing is limited: the queue keeps up with appends and
its request rate is whatever the scrapes produce (the *steady* rate, an EWMA
kept here). The first failure (5xx, 429, timeout, refused connection) starts
*recovery*: requests to the endpoint then pass a token gate whose rate starts
at half the steady rate, never below the floor (``FLOOR``, or one request
per ``max_backoff`` if that is more: the queue's choice), and is

- increased additively each second in which requests succeeded without a
  failure (``step``: a quarter of the steady rate, at least ``FLOOR``), and
- halved on a failure, at most once per second, so a burst of answers to
  requests sent together counts once.

Slow answers do not cut the rate in recovery. They used to (times 0.7 for an
answer 3x the healthy latency), and with 10 agents on a shared 2-core host
after a 40 s outage every agent was cut 5-14 times, one sat at the floor for
25 s and caught up after 49 s (the others 21-42 s); judging a catch-up batch
by its size did not help (at load 28, 6-22 cuts, 27-65 s): there, latency
measures the CPU of the agent and of the backend, not a backend asking for
less. The load on the backend is bounded without it: the caps below, and
each shard waits for its answer before the next request, so a slower
backend gets fewer requests by itself. A backend that is overloaded says so
with 429, 5xx or a timeout, and those halve the rate.

During recovery the rate never exceeds ``requests`` (1.5 by default) times the
steady request rate, and the samples sent per second never exceed ``samples``
(3 by default) times the steady sample rate: the catch-up drains the backlog
in fuller batches (agent/remote/dispatch.py lets a catch-up batch carry
several samples per series), not in more requests. A 429 or 5xx halves the
rate (above), and a ``Retry-After`` holds every request of the endpoint until
it has passed. While the last answer was a failure the endpoint is *probing*:
one shard at a time sends an empty write request before any batch, so a
backend that is still down costs a few bytes per attempt, not a full batch.

An answer more than ``SLOW`` seconds and ``LATENCY_FACTOR`` times slower than
the healthy baseline marks the endpoint *stalled* until the queue has caught
up: a stalled backend leaves a backlog as an outage does, and the queue
drains it in catch-up batches. It does not gate requests: an agent short of
CPU sees slow answers too (its event loop is late), and pacing it then would
only make it fall further behind.

A sender that comes back to the gate after its turn (it was waiting on its
previous answer) is credited at most one mean gap: charging the gap from its
return instead lost a share of the rate to each request's own time (6 % for a
sender busy half a mean gap; tests/remote/test_ratecontrol.py), one suspect for
10 agents draining a 180 s backlog at ~2.25x the input where the caps allow 3x.

The gaps between requests are drawn with full jitter (uniform between 0 and
twice the mean), so agents that see the backend return at the same moment
do not send in step. Recovery ends when the queue has caught up with the WAL
(the backlog is gone) for two consecutive seconds. The result: after an outage
the backlog is drained at a rate that starts near the steady rate and grows
only as long as the backend keeps accepting, so N agents reconnecting
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
SLOW = 1.0  # seconds above the healthy baseline: an answer this late starts recovery as a failure does
CALM_TICKS = 2


class SendRate:
    def __init__(self, rng: random.Random | None = None, floor: float = FLOOR, requests: float = 1.5,
                 samples: float = 3.0) -> None:
        self.floor = floor
        self.requests = max(1.0, requests)
        self.samples = max(1.0, samples)
        self.limited = False
        self.probing = False  # the last answer was a failure: probe before sending a batch
        self.stalled = False  # a very slow answer while healthy, until caught up: catch-up batches
        self.probes = 0
        self._probe_busy = False
        self.rate = 0.0  # requests/s while limited
        self.steady = EWMARate(0.3, 1.0)
        self.steady_samples = EWMARate(0.3, 1.0)
        self.baseline = 0.0  # EWMA of healthy request latency, seconds
        self.recoveries = 0
        self._rng = rng or random.Random()
        self._next = 0.0
        self._lock = asyncio.Lock()
        self._ok = 0
        self._failed = 0
        self._last_cut = 0.0
        self._calm = 0
        self._samples = 0  # samples acknowledged since the last tick
        self._inflight = 0  # requests sent and not answered yet

    def claim_probe(self) -> bool:
        """Whether the caller is to send the probe now (one at a time while probing)."""
        if not self.probing or self._probe_busy:
            return False
        self._probe_busy = True
        self.probes += 1
        return True

    def probe_done(self) -> None:
        self._probe_busy = False

    def hold(self, seconds: float) -> None:
        """A Retry-After: no request of this endpoint before ``seconds`` from now."""
        self._next = max(self._next, time.monotonic() + seconds)

    def sample_rate(self) -> float:
        """Samples per second allowed in recovery (0: not known yet, no limit)."""
        return self.samples * self.steady_samples.rate

    async def acquire(self, stop: asyncio.Event, count: int = 0) -> bool:
        """Wait for permission to send one request of ``count`` samples; False if ``stop`` was set."""
        if not self.limited:
            self._inflight += 1
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
                gap = 1.0 / max(self.rate, self.floor)
                srate = self.sample_rate()
                if count and srate > 0:
                    gap = max(gap, count / srate)
                # A sender busy past its turn (waiting on the answer, encoding) is credited up
                # to one mean gap, so the gate's rate is what is sent, not the rate minus the
                # time spent on each request; more credit would allow bursts after idling.
                base = max(now - gap, self._next)
                self._next = base + self._rng.uniform(0.0, 2.0) * gap
        if stop.is_set():
            return False
        self._inflight += 1
        return True

    def observe(self, outcome: str, latency: float, count: int = 0) -> None:
        """The answer to one request of ``count`` samples: "ok", "retry" (will retry) or "drop"."""
        now = time.monotonic()
        self._inflight = max(0, self._inflight - 1)
        if outcome == "retry":
            self.probing = True
            self._failed += 1
            if not self.limited:
                self._start(now)
            elif now - self._last_cut >= 1.0:
                self.rate = max(self.floor, self.rate / 2)
            self._last_cut = now
            return
        self._ok += 1
        self.probing = False
        self._samples += count
        if not self.limited:
            if self.baseline and latency > max(self.baseline * LATENCY_FACTOR, self.baseline + SLOW):
                self.stalled = True  # not learnt as the baseline
                return
            self.baseline = latency if self.baseline == 0 else self.baseline + 0.1 * (latency - self.baseline)

    def _start(self, now: float) -> None:
        """Recovery begins: half the steady rate, growing while answers stay quick."""
        self.limited = True
        self.recoveries += 1
        self.rate = max(self.floor, 0.5 * self.steady.rate)
        self._next = now
        self._calm = 0
        self.stalled = False

    def tick(self, elapsed: float, caught_up: Callable[[], bool]) -> None:
        """Once a second: learn the steady rate, or grow the recovery rate, or end recovery."""
        ok, failed, samples = self._ok, self._failed, self._samples
        self._ok = self._failed = self._samples = 0
        if not self.limited:
            if self.stalled and not failed and caught_up():
                self.stalled = False
            # A second of waiting on answers, or of draining a stall's backlog, is no steady rate.
            if not failed and not self.stalled and (ok or not self._inflight):
                self.steady.incr(ok)
                self.steady.tick(elapsed)
                self.steady_samples.incr(samples)
                self.steady_samples.tick(elapsed)
            return
        if ok and not failed:
            top = max(self.floor, self.requests * self.steady.rate)
            self.rate = min(top, self.rate + max(self.floor, 0.25 * self.steady.rate) * elapsed)
        if not failed and caught_up():
            self._calm += 1
            if self._calm >= CALM_TICKS:
                self.limited = False
        else:
            self._calm = 0

    def status(self) -> dict[str, float | bool]:
        return {"limited": self.limited, "rate": round(self.rate, 3) if self.limited else 0.0,
                "steady_rate": round(self.steady.rate, 3), "latency_baseline": round(self.baseline, 4),
                "steady_samples_rate": round(self.steady_samples.rate, 1), "probing": self.probing, "stalled": self.stalled,
                "probes": self.probes, "recoveries": self.recoveries}
