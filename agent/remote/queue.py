"""One endpoint's queue: its lifecycle, the acknowledgements it commits, its status.

The parts, each in its own module: a ``Watcher`` (agent/wal/watcher.py)
follows the WAL from the queue's durable position and hands every record to
the queue, which implements the watcher's ``WriteTo``; the ``SeriesTable``
(agent/remote/series.py) says what each series looks like to this endpoint;
the ``Dispatcher`` (agent/remote/dispatch.py) routes samples into the
shards' open batches; ``Shard`` (agent/remote/shards.py) sends one batch at
a time, encoded when sent (agent/remote/encode.py). The WAL is the queue:
nothing is held in memory beyond ``capacity`` samples per shard, and the
watcher simply waits when a shard is full, so an outage costs disk, not
memory, and loses nothing. Between reads the queue reshards as the tuner
(agent/remote/sharding.py) asks.

Exactly-once towards backends that reject out-of-order samples (Prometheus
answers 400 to a request holding a sample older than the series' newest, and
drops the whole request) rests on two rules:

- a batch holds at most one sample per series (enforced by the dispatch: a
  repeat at a later timestamp cuts the batch; a repeat at the same
  timestamp, which relabeling produces when it makes two series identical,
  is dropped keeping the first, counted as ``duplicate_timestamp``: sent in
  a later request, Prometheus would refuse it as a "duplicate sample for
  timestamp" with a 400 and drop that whole request), and
- a shard sends its next batch only once the previous one's acknowledgement
  is durably committed (group commit: one fsync covers every shard that
  acknowledged meanwhile).

After a crash, then, at most one batch per shard is re-sent, and for every
series in it the re-sent sample is the newest the backend can have: an exact
duplicate (same timestamp, same value), which Prometheus, Mimir and
VictoriaMetrics accept silently.

While catching up after a failure (issue 10) the first rule is relaxed: a
batch may carry several samples per series, in timestamp order, up to
``catchup_batch`` times ``max_samples_per_send``, so a backlog drains in
requests whose count follows its bytes, not its length in scrape intervals.
Such a batch is announced first: its end is committed as the shard's
*intent* before it is sent. After a crash with an intent outstanding, the
range up to it is re-sent in requests of one sample per series each, cut
exactly at the intent, so every re-sent request holds only samples of that
range: if the backend had accepted the batch, the requests holding an older
sample of a series are refused whole (Prometheus: 400, out of order) and
lose nothing, the last one is exact duplicates; if not, they are accepted in
order. A SIGKILL outside a catch-up batch's send is exactly as before.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

import structlog

from agent.loopclock import LoopClock
from agent.remote.admission import MIN_BOUND, Backlog
from agent.remote.backoff import Backoff
from agent.remote.client import SendResult, WriteClient, redact_url
from agent.remote.codec import compress
from agent.remote.codec_v2 import V1, V2, encode_metadata_v1
from agent.remote.config import EndpointConfig
from agent.remote.dispatch import EXEMPLARS, FLOATS, HISTOGRAMS, Dispatcher
from agent.remote.encode import encode_batch
from agent.remote.handoff import scan as scan_handoffs
from agent.remote.metrics import QueueMetrics, RemoteMetrics
from agent.remote.position import Point, Position, PositionStore
from agent.remote.ratecontrol import FLOOR, SendRate
from agent.remote.series import SeriesTable
from agent.remote.sharding import ShardTuner, TunerInput
from agent.remote.shards import Batch, Shard
from agent.wal import WAL
from agent.wal.watcher import Watcher

log = structlog.get_logger("remote.queue")


@dataclass
class QueueStats:
    """Plain counts for the status API; they survive the queue being rebuilt on a reload."""

    sent: int = 0
    failed: int = 0
    retried: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    failed_reasons: dict[str, int] = field(default_factory=dict)  # why the backend refused, per reason
    histograms_sent: int = 0
    exemplars_sent: int = 0
    dropped_histograms: dict[str, int] = field(default_factory=dict)
    dropped_exemplars: int = 0
    last_error: str = ""
    last_error_time: float = 0.0


class EndpointQueue:
    """One endpoint; the ``WriteTo`` of its WAL watcher."""

    def __init__(
        self,
        cfg: EndpointConfig,
        wal: WAL,
        store: PositionStore,
        external_labels: dict[str, str],
        *,
        metrics: RemoteMetrics | None = None,
        stats: QueueStats | None = None,
        on_corrupt_active: Any = None,
        clock: LoopClock | None = None,
    ) -> None:
        self.cfg = cfg
        self.key = cfg.key()
        self.wal = wal
        self.store = store
        self.stats = stats or QueueStats()
        self.remote_name = cfg.name or self.key
        self.safe_url = redact_url(cfg.url)
        self._on_corrupt_active = on_corrupt_active
        q = cfg.queue
        self.series = SeriesTable(wal.labels_by_ref, external_labels, cfg.write_relabel_rules, wal.ref_of)
        self.dispatch = Dispatcher(self.series, q.sample_age_limit, self.dropped, clock)
        self.watcher: Watcher | None = None
        # The families belong to the RemoteWrite (one registry per component); None: private ones.
        self._m: QueueMetrics = (metrics or RemoteMetrics()).queue(self.remote_name, self.safe_url)
        self._m.shards_max.set(q.max_shards)
        self._m.shards_min.set(q.min_shards)
        self._m.shard_capacity.set(q.capacity)
        self.client = WriteClient(
            cfg.url,
            timeout=cfg.remote_timeout,
            headers=cfg.headers,
            http=cfg.http,
            retry_on_http_429=q.retry_on_http_429,
            oauth2=cfg.oauth2,
        )
        self._committed: Position | None = None
        self._space = asyncio.Event()
        self._dirty = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._committed_evt = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._shard_tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._backoff = Backoff(q.min_backoff, q.max_backoff)
        self.tuner = ShardTuner(q.min_shards, q.max_shards, q.shard_update_interval)
        self._want_shards = 0  # set by the tuner; the queue reshards between reads
        self._highest_appended = 0  # ms, newest sample appended to the WAL (told by RemoteWrite)
        self._highest_sent = 0  # ms, newest sample acknowledged
        self.appended_total = 0  # samples appended to the WAL since start (scrape admission's rates)
        self.done_total = 0  # samples since sent, refused or dropped
        self._started_at = time.monotonic()
        self.reshards = 0
        self._reader_waited = False  # since the tuner's last tick (shards, not the CPU, limit sending)
        self.proto = cfg.protobuf_message if cfg.protobuf_message in (V1, V2) else V1
        # Recovery never goes below one request per max_backoff (the slowest a lone shard retries).
        self.rate = SendRate(floor=max(FLOOR, 1.0 / max(q.max_backoff, 1e-3)), requests=q.catchup_requests,
                             samples=q.catchup_samples)
        self._intents: list[Point | None] = []  # per shard, the end of the catch-up batch in flight

    @property
    def shards(self) -> list[Shard]:
        return self.dispatch.shards

    @property
    def proto(self) -> str:
        return self._proto

    @proto.setter
    def proto(self, value: str) -> None:
        self._proto = value
        self.dispatch.fast = value == V1

    @property
    def dispatched(self) -> Point:
        """The end of the last record dispatched: every shard that is idle is acknowledged up to here."""
        if self.watcher is None:
            return (0, 0, 0)
        return (*self.watcher.position, 0)

    # ------------------------------------------------------------- lifecycle

    async def start(self, start_at: tuple[int, int]) -> None:
        """Resume at the durable position, or begin at ``start_at`` if this endpoint has none."""
        pos = self.store.load(self.key)
        fresh = pos is None
        if pos is None:
            pos = Position.uniform(*start_at, max(1, self.cfg.queue.min_shards))
        self._committed = pos
        low = pos.low()
        if any(p > (*low, 0) for p in pos.points):
            self.dispatch.resume = list(pos.points)
        if pos.intents and any(e is not None and e > p for e, p in zip(pos.intents, pos.points, strict=True)):
            self.dispatch.layered = [e if e is not None and e > p else None
                                     for e, p in zip(pos.intents, pos.points, strict=True)]
        self.watcher = Watcher(self.wal, *low, self, histograms=self.cfg.send_native_histograms,
                               exemplars=self.cfg.send_exemplars, on_corrupt_active=self._on_corrupt_active,
                               logger=log.bind(remote_name=self.remote_name))
        # Handoff markers not sent yet: a crash must not let what precedes them leave first.
        for end, refs, cutoffs in await asyncio.to_thread(scan_handoffs, self.wal.directory, low, self.wal.head()):
            self.dispatch.handoffs.note(end, refs, cutoffs)
        self._make_shards(pos.points)
        if self.dispatch.layered is not None:  # kept until passed, so a second crash re-sends it alike
            self._intents = list(self.dispatch.layered)
        if fresh:
            await asyncio.to_thread(self.store.save, self.key, pos)
        self._tasks = [
            asyncio.create_task(self.watcher.run(), name=f"follow-{self.key}"),
            asyncio.create_task(self._commit_loop(), name=f"commit-{self.key}"),
            asyncio.create_task(self._tune_loop(), name=f"tune-{self.key}"),
            asyncio.create_task(self._rate_loop(), name=f"rate-{self.key}"),
            asyncio.create_task(self._metadata_loop(), name=f"metadata-{self.key}"),
        ]
        log.info("remote write queue started", remote_name=self.remote_name, url=self.safe_url,
                 segment=low[0], offset=low[1], shards=len(self.shards), resumed=not fresh)

    def _make_shards(self, points: list[Point]) -> None:
        q = self.cfg.queue
        self.dispatch.shards = [
            Shard(
                i,
                points[i],
                client=self.client,
                backoff=self._backoff,
                max_samples=max(1, q.max_samples_per_send),
                deadline=q.batch_send_deadline,
                metrics=self._m,
                dispatched=lambda: self.dispatched,
                on_done=self._on_done,
                durable=self._wait_durable,
                rate=self.rate,
                encode=self._encode,
                expire=self.dispatch.expire,
                intent=self._announce,
                settle=self.dispatch.settle,
            )
            for i in range(len(points))
        ]
        self._intents = [None] * len(points)
        self._catchup(self.dispatch.multi)
        self._m.shards.set(len(self.shards))
        self._shard_tasks = [asyncio.create_task(s.run(), name=f"shard-{self.key}-{s.index}") for s in self.shards]

    async def stop(self, grace: float = 5.0) -> None:
        """Stop reading; let in-flight sends finish within ``grace``; commit what was acknowledged."""
        self._stopping = True
        if self.watcher is not None:
            self.watcher.stopping = True
        self._committed_evt.set()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for s in self.shards:
            s.stop()
        if self._shard_tasks:
            _done, pending = await asyncio.wait(self._shard_tasks, timeout=max(0.0, grace))
            for t in pending:
                t.cancel()
            await asyncio.gather(*self._shard_tasks, return_exceptions=True)
        await self._commit()
        await self.client.aclose()
        self._m.pending.set(0)

    def wake(self) -> None:
        """New records were appended."""
        if self.watcher is not None:
            self.watcher.wake()

    def note_appended(self, n: int, max_ts: int) -> None:
        """``n`` samples up to timestamp ``max_ts`` went into the WAL: the tuner's "samples in"."""
        self.tuner.samples_in.incr(n)
        self.appended_total += n
        if max_ts > self._highest_appended:
            self._highest_appended = max_ts
        self.wake()

    def forget(self, refs: list[int]) -> None:
        """The WAL forgot these refs (truncation): so does every table keyed by them."""
        self.dispatch.reset_routes()
        self.series.forget(refs)

    def _encode(self, batch: Batch) -> tuple[bytes, str]:
        proto = self.proto
        return encode_batch(self.series, batch, proto), proto

    # -------------------------------------------------- WriteTo, for the watcher

    async def ready(self) -> bool:
        """Reshard if the tuner asked; wait (up to a second) while a shard is full."""
        if self._want_shards and self._want_shards != len(self.shards):
            want, self._want_shards = self._want_shards, 0
            await self._reshard(want)
            return False
        if self._full():
            self._space.clear()
            if self._full():
                self._reader_waited = True
                try:
                    await asyncio.wait_for(self._space.wait(), 1.0)
                except TimeoutError:
                    pass
                return False
        return True

    def _full(self) -> bool:
        cap = max(self.cfg.queue.capacity, 2 * self.shards[0].max_samples) if self.shards else 0
        return any(s.pending() >= cap for s in self.shards)

    def _catchup(self, on: bool) -> None:
        """Catching up after a failure (or not): batches of several samples per series, larger."""
        q = self.cfg.queue
        self.dispatch.multi = on
        size = max(1, q.max_samples_per_send) * (max(1, q.catchup_batch) if on else 1)
        for s in self.shards:
            s.max_samples = size

    def append_samples(self, seg: int, off: int, refs: array, tss: array, vals: array) -> None:
        self.dispatch.samples(seg, off, refs, tss, vals)

    def append_histograms(self, seg: int, off: int, refs: array, tss: array, bodies: list[Any]) -> None:
        self.dispatch.histograms(seg, off, refs, tss, bodies)

    def skip_histograms(self, n: int) -> None:
        """Without ``send_native_histograms`` they are dropped and counted (Prometheus skips them silently)."""
        self.dropped(HISTOGRAMS, "native_histograms_disabled", n)

    def append_exemplars(self, seg: int, off: int, refs: array, tss: array, vals: array,
                         labels: list[Any]) -> None:
        self.dispatch.exemplars(seg, off, refs, tss, vals, labels)

    def update_metadata(self, items: list[tuple[str, str, str, str]]) -> None:
        self.series.learn_metadata(items)

    def records_read(self) -> None:
        now = time.monotonic()
        for s in self.shards:
            s.touched(now)
        self._m.pending.set(sum(s.pending() for s in self.shards))
        if self.dispatch.handoffs:
            self.dispatch.expire_handoffs(self.position().low())
        self._dirty.set()

    def wal_error(self, msg: str) -> None:
        self._error(msg)

    # ---------------------------------------------------------------- metadata

    async def _metadata_loop(self) -> None:
        """Remote-Write 1.0 sends metadata apart from samples, all of it every ``send_interval``."""
        mc = self.cfg.metadata
        meta = self.series.meta
        while True:
            await asyncio.sleep(max(0.05, mc.send_interval))
            if not mc.send or self.proto != V1 or not meta or self.rate.limited:
                continue
            items = [(name, *md) for name, md in sorted(meta.items())]
            step = max(1, mc.max_samples_per_send)
            for i in range(0, len(items), step):
                chunk = items[i : i + step]
                result = await self.client.send(compress(encode_metadata_v1(chunk)), 0, V1)
                if result.outcome == "ok":
                    self._m.metadata.inc(len(chunk))
                else:
                    self._m.metadata_failed.inc(len(chunk))
                    self._error(f"sending metadata: {result.reason}: {result.detail}")
                    break

    # -------------------------------------------------------------- resharding

    async def _tune_loop(self) -> None:
        last = time.monotonic()
        busy_seen = 0.0
        while True:
            await asyncio.sleep(self.tuner.next_wait())
            now = time.monotonic()
            busy = self._m.busy_seconds
            inp = TunerInput(self._highest_appended / 1000.0, self._highest_sent / 1000.0,
                             failing=self.rate.limited or any(s.attempt > 0 for s in self.shards),
                             busy=busy - busy_seen, reader_waited=self._reader_waited)
            busy_seen = busy
            self._reader_waited = False
            want = self.tuner.tick(len(self.shards), now - last, inp)
            last = now
            if want != len(self.shards):
                self._want_shards = want
                self.wake()
                self._space.set()

    async def _rate_loop(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            self.rate.tick(now - last, self._caught_up)
            last = now
            behind = self.rate.limited or self.rate.stalled
            if behind != self.dispatch.multi:
                self._catchup(behind)

    def _caught_up(self) -> bool:
        """No backlog: the watcher is at the WAL's head and no shard has a full batch waiting."""
        return self.dispatched[:2] >= self.wal.head() and not any(s.ready for s in self.shards)

    async def _reshard(self, n: int) -> bool:
        """Drain every shard, commit, then continue with ``n`` shards from the same point.

        Runs in the watcher's task between reads, so nothing is dispatched
        meanwhile. Once every shard is idle, all of them are acknowledged up to
        ``dispatched`` (a record boundary) and committed: the routing ``ref %
        shards`` can change without one series ever having samples in two
        shards at once. The new count is committed before the new shards send,
        so a crash at any point leaves a position that matches its shard
        count. A drain that stalls (the backend started failing) is abandoned
        and the old shards simply go on.
        """
        if self.dispatch.resume is not None or self.dispatch.layered is not None or self._stopping:
            return False
        d = self.dispatched
        for s in self.shards:
            if s.count:
                s.cut(d)
        limit = time.monotonic() + max(10.0, 2 * self.cfg.remote_timeout)
        while not all(s.idle() for s in self.shards):
            if self._stopping or time.monotonic() > limit or any(s.attempt > 0 for s in self.shards):
                log.info("reshard abandoned: shards did not drain", remote_name=self.remote_name,
                         shards=len(self.shards), wanted=n)
                return False
            await asyncio.sleep(0.01)
        await self._commit()
        old, old_tasks = self.shards, self._shard_tasks
        for s in old:
            s.stop()
        await asyncio.gather(*old_tasks, return_exceptions=True)
        pos = Position.uniform(d[0], d[1], n)
        async with self._commit_lock:
            await asyncio.to_thread(self.store.save, self.key, pos)
            self._committed = pos
        self._make_shards(pos.points)
        self.reshards += 1
        log.info("resharded", remote_name=self.remote_name, url=self.safe_url, old=len(old), new=n,
                 **{k: round(v, 3) for k, v in self.tuner.last.items()})
        return True

    # --------------------------------------------------------- acks and errors

    def _on_done(self, shard: Shard, batch: Batch, result: SendResult) -> None:
        st = self.stats
        if result.outcome == "fallback":
            if self.proto != V1:
                self.proto = V1
                self._error(f"{result.reason}: {result.detail}; falling back to Remote-Write 1.0")
            return
        if result.outcome == "expired":  # every sample passed sample_age_limit while retrying (counted)
            self._space.set()
            self._dirty.set()
            return
        if result.outcome == "retry":
            st.retried += batch.count
            self._error(f"{result.reason}: {result.detail}", warn=shard.attempt == 0)
            return
        if result.outcome == "drop":
            st.failed += batch.count  # histograms and exemplars included
            st.failed_reasons[result.reason] = st.failed_reasons.get(result.reason, 0) + batch.count
            self.tuner.samples_dropped.incr(batch.count)
            self.done_total += batch.count
            self._error(f"{result.reason}: {result.detail}; {batch.count} samples dropped")
        else:
            nh, ne = len(batch.hparts), len(batch.eparts)
            ns = batch.count - nh - ne
            st.sent += ns
            st.histograms_sent += nh
            st.exemplars_sent += ne
            self.tuner.samples_out.incr(batch.count)
            self.done_total += batch.count
            w, wh, _we = result.written
            if w is not None and w < ns and self.proto == V2:
                # A 2.0 receiver said it kept fewer samples than were sent: the rest is gone.
                self.dropped(FLOATS, "not_written", ns - w)
                self._error(f"receiver wrote {w} of {ns} samples")
            if wh is not None and wh < nh and self.proto == V2:
                self.dropped(HISTOGRAMS, "not_written", nh - wh)
                self._error(f"receiver wrote {wh} of {nh} histograms")
            if batch.max_ts > self._highest_sent:
                self._highest_sent = batch.max_ts
        self._space.set()
        self._dirty.set()

    def dropped(self, kind: str, reason: str, n: int) -> None:
        """Count ``n`` items of ``kind`` (samples, histograms, exemplars) dropped before sending."""
        st = self.stats
        if kind == FLOATS:
            st.dropped[reason] = st.dropped.get(reason, 0) + n
            self.tuner.samples_dropped.incr(n)
            self.done_total += n
            self._m.samples_dropped(reason, n)
        elif kind == HISTOGRAMS:
            st.dropped_histograms[reason] = st.dropped_histograms.get(reason, 0) + n
            self.tuner.samples_dropped.incr(n)
            self.done_total += n
            self._m.histograms_dropped(reason, n)
        elif kind == EXEMPLARS:
            st.dropped_exemplars += n
            self._m.exemplars_dropped(reason, n)

    def _error(self, msg: str, warn: bool = True) -> None:
        self.stats.last_error = msg
        self.stats.last_error_time = time.time()
        if warn:
            log.warning("remote write", remote_name=self.remote_name, url=self.safe_url, error=msg)

    # --------------------------------------------------------------- positions

    def position(self) -> Position:
        """What is acknowledged now: per shard, its last acked batch, or everything read if it is idle."""
        d = self.dispatched
        points = [max(s.acked, d) if s.idle() else s.acked for s in self.shards]
        intents = [e if e is not None and e > p else None
                   for e, p in zip(self._intents or [None] * len(points), points, strict=True)]
        return Position(points, intents if any(e is not None for e in intents) else None)

    async def _announce(self, index: int, end: Point) -> bool:
        """Before shard ``index`` sends a catch-up batch ending at ``end``: commit that end durably.

        False when the queue stopped first: the batch must not be sent.
        """
        self._intents[index] = end
        while not self._stopping:
            try:
                await self._commit()
            except OSError as exc:  # the batch waits: unannounced, it must not be sent
                self._error(f"saving the send position: {exc}")
                await asyncio.sleep(1.0)
                continue
            c = self._committed
            if c is not None and c.intents is not None and index < len(c.intents) and c.intents[index] == end:
                return True
            await asyncio.sleep(0.01)
        return False

    def committed(self) -> Position | None:
        return self._committed

    async def _commit_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._dirty.wait(), 1.0)
            except TimeoutError:
                pass
            self._dirty.clear()
            try:
                await self._commit()
            except OSError as exc:
                self._error(f"saving the send position: {exc}")
                await asyncio.sleep(1.0)

    async def _commit(self) -> None:
        async with self._commit_lock:
            if not self.shards:
                return
            pos = self.position()
            if self._committed is not None and pos == self._committed:
                return
            await asyncio.to_thread(self.store.save, self.key, pos)
            self._committed = pos
            evt, self._committed_evt = self._committed_evt, asyncio.Event()
            evt.set()

    async def _wait_durable(self, index: int, point: Point) -> None:
        """Until shard ``index``'s committed position has reached ``point``."""
        while not self._stopping:
            c = self._committed
            if c is not None and index < len(c.points) and c.points[index] >= point:
                return
            self._dirty.set()
            await self._committed_evt.wait()

    # ------------------------------------------------------------------ status

    def pending(self) -> int:
        return sum(s.pending() for s in self.shards)

    def lag_seconds(self) -> float:
        """How far the newest acknowledged sample trails the newest appended (0: caught up, or
        nothing acknowledged yet since start: no reference to measure from)."""
        if not self.pending() or not self._highest_sent:
            return 0.0
        return max(0.0, (self._highest_appended - self._highest_sent) / 1000.0)

    def backlog(self) -> Backlog:
        """How far behind the WAL's writer this queue is, for scrape admission (read-only).

        Healthy means the backend answers: no send being retried and no recovery
        from a failure under way (an outage's backlog is the WAL's to buffer).
        Ramping: the shard tuner still asks for more shards than run (and may).
        """
        failing = self.rate.limited or any(s.attempt > 0 for s in self.shards)
        n = len(self.shards)
        ramping = self.tuner.last.get("formula", 0.0) > n and n < self.cfg.queue.max_shards
        return Backlog(self.lag_seconds(), max(MIN_BOUND, 2 * self.cfg.queue.batch_send_deadline), not failing,
                       self.appended_total, self.done_total, time.monotonic() - self._started_at,
                       ramping)

    def settled(self) -> bool:
        """Every acknowledgement so far is durably committed."""
        c = self._committed
        return c is not None and c == self.position()

    def status(self) -> dict[str, Any]:
        st = self.stats
        low = self._committed.low() if self._committed else (0, 0)
        return {
            "name": self.remote_name,
            "url": self.safe_url,
            "pending_samples": self.pending(),
            "shards": len(self.shards),
            "reshards": self.reshards,
            "send_rate": self.rate.status(),
            "protocol": self.proto,
            "metadata_families": len(self.series.meta),
            "shard_tuning": {k: round(v, 3) for k, v in self.tuner.last.items()},
            "samples_sent": st.sent,
            "samples_failed": st.failed,
            "samples_retried": st.retried,
            "samples_dropped": dict(st.dropped),
            "samples_failed_by_reason": dict(st.failed_reasons),
            "histograms_sent": st.histograms_sent,
            "histograms_dropped": dict(st.dropped_histograms),
            "exemplars_sent": st.exemplars_sent,
            "exemplars_dropped": st.dropped_exemplars,
            "last_error": st.last_error,
            "last_error_time": st.last_error_time,
            "position": {"segment": low[0], "offset": low[1]},
        }
