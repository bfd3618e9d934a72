"""A shard: one sender with one batch in flight, retried in place until it is done.

The queue's dispatch (agent/remote/dispatch.py) fills a shard's open batch
with references into the WAL records' columns (``parts``, ``hparts``,
``eparts``; nothing is encoded yet) and cuts it when ``max_samples_per_send``
is reached or a series would appear twice with two timestamps; the shard
cuts a partial batch itself when its oldest sample has waited
``batch_send_deadline``. A batch is encoded when it is sent (the queue's
``encode``), and on a retryable answer sent again after a full-jitter
backoff, until it is accepted or rejected for good: so one series' samples,
which always land in the same shard, leave in the order they were written.
Only then does the shard's acknowledged position move past it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.remote.backoff import Backoff
from agent.remote.client import SendResult, WriteClient
from agent.remote.codec import compress
from agent.remote.metrics import QueueMetrics
from agent.remote.position import Point
from agent.remote.ratecontrol import SendRate


@dataclass(slots=True)
class Batch:
    count: int
    end: Point  # the shard's acknowledged position once this batch is done
    max_ts: int
    # The samples themselves: (refs, timestamps, values, indexes) per WAL record, the
    # record's columns shared, not copied. Encoding (at each send: 1.0, 2.0, a fallback to
    # 1.0, a retry after samples past sample_age_limit were dropped) starts from here.
    parts: list[Part] = field(default_factory=list)
    # Native histograms ``(ref, ts, stored message body)`` and exemplars ``(ref, ts, value, labels)``;
    # ``count`` includes them (they fill a batch as samples do, as in Prometheus).
    hparts: list[tuple[int, int, Any]] = field(default_factory=list)
    eparts: list[tuple[int, int, float, Any]] = field(default_factory=list)
    # Some series has several samples in it (a catch-up batch): its send is announced
    # durably first (the queue's ``intent``), see agent/remote/queue.py.
    repeats: bool = False

    @property
    def samples(self) -> int:
        """Float samples alone."""
        return self.count - len(self.hparts) - len(self.eparts)


# (refs, timestamps, values, record indexes: a list or a range, their RW 1.0 prefixes
# when the fast path routed them (one timestamp then), else None)
Part = tuple[Any, Any, Any, Sequence[int], Any]
Encoder = Callable[[Batch], tuple[bytes, str]]  # uncompressed body and its protocol
PROBE = compress(b"")  # an empty write request (1.0 and 2.0 alike): is the backend back?


class Shard:
    def __init__(
        self,
        index: int,
        start: Point,
        *,
        client: WriteClient,
        backoff: Backoff,
        max_samples: int,
        deadline: float,
        metrics: QueueMetrics,
        dispatched: Callable[[], Point],
        on_done: Callable[[Shard, Batch, SendResult], None],
        durable: Callable[[int, Point], Awaitable[None]],
        rate: SendRate | None = None,
        encode: Encoder,
        expire: Callable[[Batch], Batch | None] | None = None,
        intent: Callable[[int, Point], Awaitable[bool]] | None = None,
        settle: Callable[[Batch], Awaitable[Batch | None]] | None = None,
    ) -> None:
        self.index = index
        self.acked: Point = start
        self.count = 0
        self.max_ts = 0
        self.first_at = 0.0  # monotonic time the oldest buffered sample arrived
        self.ready: deque[Batch] = deque()
        self.inflight: Batch | None = None
        self.attempt = 0
        self.gated = 0.0  # seconds the batch in flight waited at the recovery rate gate
        self.client = client
        self.backoff = backoff
        self.max_samples = max_samples
        self.deadline = deadline
        self.metrics = metrics
        self._dispatched = dispatched
        self._on_done = on_done
        self._durable = durable
        self.rate = rate or SendRate()
        self._encode = encode
        self._expire = expire or (lambda b: b)
        self._intent = intent
        self._settle = settle  # right before each send: the batch as it may leave (handoffs); None: nothing
        self.repeats = False  # the open batch holds a series twice (set by the dispatch)
        self.parts: list[Part] = []
        self.hparts: list[tuple[int, int, Any]] = []
        self.eparts: list[tuple[int, int, float, Any]] = []
        # ref -> timestamp of its sample in the open batch: a batch holds one sample per series; a repeat at
        # another timestamp cuts the batch, a repeat at the same timestamp is dropped by the reader.
        self.seen: dict[int, int] = {}
        self._wake = asyncio.Event()  # new data or a cut batch
        self._stop = asyncio.Event()  # interrupts a backoff wait; new data must not
        self.stopping = False

    # Called by the reader, between dispatches (same thread, never concurrently with run()).

    def cut(self, end: Point) -> None:
        self.ready.append(Batch(self.count, end, self.max_ts, self.parts, self.hparts, self.eparts,
                                self.repeats))
        self.repeats = False
        self.parts = []
        self.hparts = []
        self.eparts = []
        self.seen = {}
        self.count = 0
        self.first_at = 0.0
        self._wake.set()

    def touched(self, now: float) -> None:
        """After a read was dispatched: start the deadline clock if the open batch just got its first sample."""
        if self.count and not self.first_at:
            self.first_at = now
            self._wake.set()

    def pending(self) -> int:
        n = self.count
        for b in self.ready:
            n += b.count
        if self.inflight is not None:
            n += self.inflight.count
        return n

    def idle(self) -> bool:
        return not self.count and not self.ready and self.inflight is None

    def flush_soon(self) -> None:
        """Send the partial batch without waiting for the deadline."""
        if self.count and not self.ready:
            self.first_at = -self.deadline
            self._wake.set()

    def stop(self) -> None:
        self.stopping = True
        self._stop.set()
        self._wake.set()

    # The shard's own task.

    async def run(self) -> None:
        while True:
            batch = await self._take()
            if batch is None:
                return
            t0 = time.monotonic()
            self.gated = 0.0
            self.inflight = batch
            result = await self._send(batch)
            if result is None:  # stopping mid-retry: the batch stays in flight, unacknowledged
                return
            self.inflight = None
            self.acked = batch.end
            self._on_done(self, batch, result)
            # The next batch may repeat this one's series: it waits until this one's
            # acknowledgement is durable, so a crash can only ever re-send this batch.
            await self._durable(self.index, batch.end)
            # Time spent held by the recovery rate gate is not work: counted as busy,
            # it would make every shard look saturated during a recovery and the tuner
            # would scale to max_shards, shrinking each batch to a few samples.
            self.metrics.busy_seconds += time.monotonic() - t0 - self.gated

    async def _take(self) -> Batch | None:
        while True:
            if self.stopping:
                return None
            if self.ready:
                return self.ready.popleft()
            timeout: float | None = None
            if self.count:
                timeout = self.first_at + self.deadline - time.monotonic() if self.first_at else self.deadline
                if timeout <= 0:
                    self.cut(self._dispatched())
                    continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    def _replaced(self, batch: Batch) -> tuple[bytes, str]:
        """A batch that lost samples before a send is the one in flight now, encoded again."""
        self.inflight = batch
        raw, proto = self._encode(batch)
        return compress(raw), proto

    async def _handoffs_applied(self, batch: Batch, body: bytes, proto: str) -> tuple[Batch, bytes, str] | None:
        """The batch as it may leave now, without what handoff markers drop, and its body; None: nothing left."""
        assert self._settle is not None
        fresh = await self._settle(batch)
        if fresh is None:
            return None
        if fresh is batch:
            return batch, body, proto
        return (fresh, *self._replaced(fresh))

    async def _send(self, batch: Batch) -> SendResult | None:
        raw, proto = self._encode(batch)
        body = compress(raw)
        self.attempt = 0
        if batch.repeats and self._intent is not None and not await self._intent(self.index, batch.end):
            return None  # stopping before it was announced: it stays in flight, unsent
        while True:
            gate = time.monotonic()
            if self.rate.probing and not self.rate.claim_probe():
                # Another shard is probing the backend: wait for its answer, not send a batch.
                try:
                    await asyncio.wait_for(self._stop.wait(), 0.05)
                except TimeoutError:
                    pass
                if self.stopping:
                    return None
                self.gated += time.monotonic() - gate
                continue
            probe = self.rate.probing  # claimed: this request is the empty probe
            if not await self.rate.acquire(self._stop, 0 if probe else batch.count):
                if probe:
                    self.rate.probe_done()
                return None
            self.gated += time.monotonic() - gate
            if probe:
                result = await self.client.send(PROBE, self.attempt, proto)
                self.rate.probe_done()
                self.metrics.probes.inc()
                if result.outcome in ("ok", "drop", "fallback"):  # the backend answers: send the batch
                    self.rate.observe("ok", result.duration)
                    continue
                self.rate.observe(result.outcome, result.duration)
            else:
                if self._settle is not None:  # last thing before it leaves: gates above may have waited long
                    applied = await self._handoffs_applied(batch, body, proto)
                    if applied is None:
                        return SendResult("expired", 0, "handed_off")
                    batch, body, proto = applied
                result = await self.client.send(body, self.attempt, proto)
                self.rate.observe(result.outcome, result.duration, batch.count)
            self.metrics.duration.observe(result.duration)
            if result.outcome == "ok":
                if batch.hparts or batch.eparts:
                    self.metrics.sent.inc(batch.samples)
                    if batch.hparts:
                        self.metrics.histograms.inc(len(batch.hparts))
                    if batch.eparts:
                        self.metrics.exemplars.inc(len(batch.eparts))
                else:
                    self.metrics.sent.inc(batch.count)
                self.metrics.bytes_sent.inc(len(body))
                if batch.max_ts:
                    self.metrics.highest_sent.set(batch.max_ts / 1000.0)
                return result
            if result.outcome == "drop" and self._settle is not None:
                # Refused while handoff markers came (a stall during the send let other agents take
                # series over, and the backend refused their old samples with the rest): sent again
                # without those samples, not failed whole. Nothing dropped now: it failed.
                applied = await self._handoffs_applied(batch, body, proto)
                if applied is None:
                    return SendResult("expired", 0, "handed_off")
                if applied[0] is not batch:
                    batch, body, proto = applied
                    continue
            if result.outcome == "drop":
                self.metrics.failed.inc(batch.count)
                return result
            if result.outcome == "fallback":
                self._on_done(self, batch, result)  # the queue switches to 1.0; nothing was written
                raw, proto = self._encode(batch)
                body = compress(raw)
                continue
            self.metrics.retried.inc(batch.count)
            self._on_done(self, batch, result)  # reports the error; position unchanged
            self.attempt += 1
            delay = self.backoff.delay(self.attempt)
            if result.retry_after is not None:
                delay = max(delay, result.retry_after)
                self.rate.hold(result.retry_after)  # every shard of the endpoint waits
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
            except TimeoutError:
                pass
            if self.stopping:
                return None
            fresh = self._expire(batch)  # sample_age_limit applies to retries too
            if fresh is None:
                return SendResult("expired", 0, "too_old")
            if fresh is not batch:
                batch = fresh
                body, proto = self._replaced(batch)
