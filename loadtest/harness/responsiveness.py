"""Is the agent still responsive while it works? Two views over one measurement window.

Shoal runs scrapes, remote write, the HTTP API and gossip on one event loop, so
a loop held by a burst of parsing makes every timer late and a peer may take a
busy agent for a dead one. The agent's own loop-lag histogram says how late
timers ran; it is read at the window's start and end and the difference gives
the window's p99, interpolated the way Prometheus' ``histogram_quantile`` does
so the figure matches what a dashboard over the same histogram would show.

The agent's own histogram exists only where the agent keeps one, so a second
probe applies to every agent alike: the harness GETs a cheap endpoint of the
agent (a fresh connection, as a kubelet probe makes) once a second and keeps
the latencies. Each probe goes at a random instant within its second: at a
fixed tick every probe would land at the same phase of a 1 s scrape cycle and
report that phase's latency as the whole distribution. It runs in the harness,
on the load core, so its figures include that core's own scheduling delay;
they compare agents, not absolutes.
"""

from __future__ import annotations

import http.client
import math
import random
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

Buckets = list[tuple[float, float]]  # (upper bound "le", cumulative count), ascending by bound

_BUCKET = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)_bucket\{([^}]*)\}\s+(\S+)")
_LE = re.compile(r'(?:^|,)\s*le="([^"]*)"')


def histogram_buckets(text: str, name: str) -> Buckets:
    """The cumulative buckets of histogram ``name`` in an exposition, summed over label sets.

    Summing by ``le`` is what ``sum by (le)`` does before ``histogram_quantile``:
    a histogram kept per label set (per Go runtime class, say) reads as one.
    """
    by_le: dict[float, float] = {}
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = _BUCKET.match(line)
        if m is None or m.group(1) != name:
            continue
        le = _LE.search(m.group(2))
        if le is None:
            continue
        try:
            bound, value = float(le.group(1)), float(m.group(3))
        except ValueError:
            continue
        by_le[bound] = by_le.get(bound, 0.0) + value
    return sorted(by_le.items())


def bucket_delta(start: Buckets, end: Buckets) -> Buckets:
    """Observations made between two reads of the same histogram (bounds of ``end``).

    A bucket missing at the start counts from zero; a count that went down (the
    agent restarted) counts from zero too, as ``rate()`` treats a counter reset.
    """
    before = dict(start)
    out: Buckets = []
    for le, count in end:
        was = before.get(le, 0.0)
        out.append((le, count - was if count >= was else count))
    return out


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """The ``q``-quantile of cumulative buckets, as Prometheus' ``histogram_quantile``.

    Linear interpolation inside the bucket holding the rank; the first bucket
    starts at 0 (unless its bound is not positive: then that bound); a rank in
    the +Inf bucket answers the highest finite bound; NaN without a +Inf bucket,
    with fewer than two buckets, or with no observations. Counts are made
    monotonic first, as Prometheus does for buckets scraped at different instants.
    """
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    bs = sorted(buckets)
    if len(bs) < 2 or not math.isinf(bs[-1][0]) or bs[-1][0] < 0:
        return math.nan
    counts, top = [], 0.0
    for _, c in bs:
        top = max(top, c)
        counts.append(top)
    observations = counts[-1]
    if observations == 0 or math.isnan(observations):
        return math.nan
    rank = q * observations
    b = next(i for i, c in enumerate(counts) if c >= rank)
    if b == len(bs) - 1:
        return bs[-2][0]
    if b == 0 and bs[0][0] <= 0:
        return bs[0][0]
    start, end, count = 0.0, bs[b][0], counts[b]
    if b > 0:
        start = bs[b - 1][0]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    if count == 0:  # only at rank 0 over an empty first bucket: Go's 0/0 makes it NaN
        return math.nan
    return start + (end - start) * (rank / count)


def highest_bucket(buckets: Sequence[tuple[float, float]]) -> float | None:
    """The lowest bound holding every observation: the largest one was at most this.

    ``inf`` when some observation fell above the highest finite bound; None
    when there were no observations.
    """
    bs = sorted(buckets)
    if not bs:
        return None
    total = max(c for _, c in bs)
    if total <= 0:
        return None
    return next(le for le, c in bs if c >= total)


@dataclass
class LoopLag:
    """One window's view of an agent's own loop-lag (or scheduling-latency) histogram."""

    metric: str
    observations: float
    p99: float  # seconds, NaN without observations
    max_bucket: float | None  # seconds; inf past the last finite bound


def loop_lag(start_text: str, end_text: str, names: Sequence[str]) -> LoopLag | None:
    """The window between two /metrics reads, from the first of ``names`` both reads have."""
    for name in names:
        a, b = histogram_buckets(start_text, name), histogram_buckets(end_text, name)
        if not a or not b:
            continue
        d = bucket_delta(a, b)
        return LoopLag(
            metric=name,
            observations=max((c for _, c in d), default=0.0),
            p99=histogram_quantile(0.99, d),
            max_bucket=highest_bucket(d),
        )
    return None


def sample_quantile(q: float, values: Sequence[float]) -> float:
    """Quantile of raw samples, linear between closest ranks (numpy's default); NaN if empty."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass
class ProbeStats:
    path: str
    n: int
    failed: int
    p50: float  # seconds, NaN with no successful probe
    p99: float
    max: float


@dataclass
class Prober:
    """GETs ``url`` once in every ``period`` seconds, at a random instant within it, in a thread."""

    url: str
    period: float = 1.0
    timeout: float = 5.0
    seed: int | None = None
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def probe(self) -> None:
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port or 80, timeout=self.timeout
        )
        try:
            t = time.perf_counter()
            conn.request("GET", parts.path or "/")
            resp = conn.getresponse()
            resp.read()
            took = time.perf_counter() - t
        except (OSError, http.client.HTTPException) as exc:
            self.failures.append(f"{type(exc).__name__}: {exc}")
            return
        finally:
            conn.close()
        if resp.status >= 500:
            self.failures.append(f"HTTP {resp.status}")
        else:
            self.latencies.append(took)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="prober")
        self._thread.start()

    def _run(self) -> None:
        # Slots on a fixed grid, so a slow answer does not push every later probe
        # back (a probe still running at its slot's end skips the next slot).
        rng = random.Random(self.seed)
        slot = time.monotonic()
        while True:
            if self._stop.wait(max(slot + rng.random() * self.period - time.monotonic(), 0.0)):
                return
            self.probe()
            slot += self.period
            while slot + self.period < time.monotonic():
                slot += self.period

    def stop(self) -> ProbeStats:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 1)
        return ProbeStats(
            path=urlsplit(self.url).path,
            n=len(self.latencies),
            failed=len(self.failures),
            p50=sample_quantile(0.5, self.latencies),
            p99=sample_quantile(0.99, self.latencies),
            max=max(self.latencies, default=math.nan),
        )
