"""One endpoint's queue: follow the WAL from a durable position, shard, batch, send, commit.

The reader decodes each samples record into columns and routes every sample
to shard ``ref % shards``, so a series always goes through the same shard and
keeps its order. Each series' labels are resolved once (external labels
added where the series lacks them, then write relabeling, as Prometheus does)
and kept as encoded bytes; routing a sample is then a few appends into the
shard's buffer. The WAL is the queue: nothing is held in memory beyond
``capacity`` samples per shard, and the reader simply waits when a shard is
full, so an outage costs disk, not memory, and loses nothing.

Exactly-once towards backends that reject out-of-order samples (Prometheus
answers 400 to a request holding a sample older than the series' newest, and
drops the whole request) rests on two rules:

- a batch holds at most one sample per series (a repeat at a later timestamp
  cuts the batch; a repeat at the same timestamp, which relabeling produces
  when it makes two series identical, is dropped keeping the first, counted
  as ``duplicate_timestamp``: sent in a later request, Prometheus would
  refuse it as a "duplicate sample for timestamp" with a 400 and drop that
  whole request), and
- a shard sends its next batch only once the previous one's acknowledgement
  is durably committed (group commit: one fsync covers every shard that
  acknowledged meanwhile).

After a crash, then, at most one batch per shard is re-sent, and for every
series in it the re-sent sample is the newest the backend can have: an exact
duplicate (same timestamp, same value), which Prometheus, Mimir and
VictoriaMetrics accept silently. The price is smaller requests when a backlog
is drained for few series; with many series batches fill up as usual.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from agent.labels import Labels
from agent.remote import metrics as m
from agent.remote.backoff import Backoff
from agent.remote.client import SendResult, WriteClient, redact_url
from agent.remote.codec import (
    compress,
    encode_exemplar_timeseries,
    encode_histogram_timeseries,
    encode_labels,
    encode_timeseries,
    pack_double,
    sample_prefix,
    ts_field,
)
from agent.remote.codec_v2 import (
    METRIC_TYPES,
    V1,
    V2,
    SeriesV2,
    encode_metadata_v1,
    encode_v2,
    family_of,
)
from agent.remote.config import EndpointConfig
from agent.remote.fastpath import Routes, dispatch_record, encode_part
from agent.remote.position import Point, Position, PositionStore
from agent.remote.ratecontrol import FLOOR, SendRate
from agent.remote.sharding import ShardTuner, TunerInput
from agent.remote.shards import Batch, Part, Shard, ShardMetrics
from agent.wal import WAL, Cursor
from agent.wal import record as walrec

log = structlog.get_logger("remote.queue")

READ_BYTES = 128 * 1024  # compressed WAL bytes per read: bounds the time one dispatch holds the loop
_MISSING = object()


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
    def __init__(
        self,
        cfg: EndpointConfig,
        wal: WAL,
        store: PositionStore,
        external_labels: dict[str, str],
        *,
        component_id: str = "",
        stats: QueueStats | None = None,
        on_corrupt_active: Any = None,
    ) -> None:
        self.cfg = cfg
        self.key = cfg.key()
        self.wal = wal
        self.store = store
        self.stats = stats or QueueStats()
        self.remote_name = cfg.name or self.key
        self.safe_url = redact_url(cfg.url)
        self._ext: Labels = tuple(sorted((k, v) for k, v in external_labels.items() if v != ""))
        self._rules = list(cfg.write_relabel_rules or [])
        self._relabel = None
        if self._rules:
            from agent import relabel  # written alongside; only needed when rules are set

            self._relabel = relabel.process
        self._prefix: dict[int, bytes | None] = {}
        self._routes = Routes()  # the fast path's routing per target's series list
        self._lbytes: dict[int, bytes] = {}  # label bytes per series, for histograms and exemplars
        self._on_corrupt_active = on_corrupt_active
        lv = (component_id, self.remote_name, self.safe_url)
        self._lv = lv
        self._m = ShardMetrics(
            m.samples_total.labels(*lv),
            m.samples_failed.labels(*lv),
            m.samples_retried.labels(*lv),
            m.queue_highest_sent.labels(*lv),
            m.sent_batch_duration.labels(*lv),
            m.bytes_total.labels(*lv),
            m.histograms_total.labels(*lv),
            m.exemplars_total.labels(*lv),
        )
        self._m_pending = m.samples_pending.labels(*lv)
        q = cfg.queue
        m.shards_max.labels(*lv).set(q.max_shards)
        m.shards_min.labels(*lv).set(q.min_shards)
        m.shard_capacity.labels(*lv).set(q.capacity)
        self.client = WriteClient(
            cfg.url,
            timeout=cfg.remote_timeout,
            headers=cfg.headers,
            http=cfg.http,
            retry_on_http_429=q.retry_on_http_429,
            oauth2=cfg.oauth2,
        )
        self.shards: list[Shard] = []
        self._resume: list[Point] | None = None
        self.cursor: Cursor | None = None
        self.dispatched: Point = (0, 0, 0)
        self._committed: Position | None = None
        self._data = asyncio.Event()
        self._space = asyncio.Event()
        self._dirty = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._committed_evt = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._shard_tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._last_corruption: str | None = None
        self._backoff = Backoff(q.min_backoff, q.max_backoff)
        self.tuner = ShardTuner(q.min_shards, q.max_shards, q.shard_update_interval)
        self._want_shards = 0  # set by the tuner; the reader reshards between reads
        self._highest_appended = 0  # ms, newest sample appended to the WAL (told by RemoteWrite)
        self._highest_sent = 0  # ms, newest sample acknowledged
        self.reshards = 0
        self._reader_waited = False  # since the tuner's last tick (shards, not the CPU, limit sending)
        # Recovery never goes below one request per max_backoff (the slowest a lone shard retries).
        self.proto = cfg.protobuf_message if cfg.protobuf_message in (V1, V2) else V1
        self._v2: dict[int, SeriesV2] = {}
        self._meta: dict[str, tuple[str, str, str]] = {}  # family -> (type, help, unit), from the WAL
        self._m_meta = m.metadata_total.labels(*lv)
        self._m_meta_failed = m.metadata_failed.labels(*lv)
        self.rate = SendRate(floor=max(FLOOR, 1.0 / max(q.max_backoff, 1e-3)))

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
            self._resume = list(pos.points)
        self.cursor = Cursor(self.wal.directory, *low)
        self.dispatched = (*low, 0)
        self._make_shards(pos.points)
        if fresh:
            await asyncio.to_thread(self.store.save, self.key, pos)
        self._tasks = [
            asyncio.create_task(self._follow(), name=f"follow-{self.key}"),
            asyncio.create_task(self._commit_loop(), name=f"commit-{self.key}"),
            asyncio.create_task(self._tune_loop(), name=f"tune-{self.key}"),
            asyncio.create_task(self._rate_loop(), name=f"rate-{self.key}"),
            asyncio.create_task(self._metadata_loop(), name=f"metadata-{self.key}"),
        ]
        log.info("remote write queue started", remote_name=self.remote_name, url=self.safe_url,
                 segment=low[0], offset=low[1], shards=len(self.shards), resumed=not fresh)

    def _make_shards(self, points: list[Point]) -> None:
        q = self.cfg.queue
        self.shards = [
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
                expire=self._expire,
            )
            for i in range(len(points))
        ]
        m.shards.labels(*self._lv).set(len(self.shards))
        self._shard_tasks = [asyncio.create_task(s.run(), name=f"shard-{self.key}-{s.index}") for s in self.shards]

    async def stop(self, grace: float = 5.0) -> None:
        """Stop reading; let in-flight sends finish within ``grace``; commit what was acknowledged."""
        self._stopping = True
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
        self._m_pending.set(0)

    def wake(self) -> None:
        """New records were appended."""
        self._data.set()

    def note_appended(self, n: int, max_ts: int) -> None:
        """``n`` samples up to timestamp ``max_ts`` went into the WAL: the tuner's "samples in"."""
        self.tuner.samples_in.incr(n)
        if max_ts > self._highest_appended:
            self._highest_appended = max_ts
        self._data.set()

    def forget(self, refs: list[int]) -> None:
        self._routes.reset(len(self.shards))
        for r in refs:
            self._prefix.pop(r, None)
            self._v2.pop(r, None)
            self._lbytes.pop(r, None)

    # ---------------------------------------------------------------- metadata

    def _learn_metadata(self, rec: Any) -> None:
        try:
            items = walrec.decode_metadata(rec.payload)
        except walrec.RecordError as exc:
            self._error(f"WAL record at segment {rec.segment} offset {rec.offset}: {exc}")
            return
        for name, mtype, help_, unit in items:
            self._meta[name] = (mtype, help_, unit)
        if items:
            self._v2.clear()  # 2.0 carries metadata per series: resolve again

    async def _metadata_loop(self) -> None:
        """Remote-Write 1.0 sends metadata apart from samples, all of it every ``send_interval``."""
        mc = self.cfg.metadata
        while True:
            await asyncio.sleep(max(0.05, mc.send_interval))
            if not mc.send or self.proto != V1 or not self._meta or self.rate.limited:
                continue
            items = [(name, *md) for name, md in sorted(self._meta.items())]
            step = max(1, mc.max_samples_per_send)
            for i in range(0, len(items), step):
                chunk = items[i : i + step]
                result = await self.client.send(compress(encode_metadata_v1(chunk)), 0, V1)
                if result.outcome == "ok":
                    self._m_meta.inc(len(chunk))
                else:
                    self._m_meta_failed.inc(len(chunk))
                    self._error(f"sending metadata: {result.reason}: {result.detail}")
                    break

    # ----------------------------------------------------------------- reading

    def _full(self) -> bool:
        cap = self.cfg.queue.capacity
        return any(s.pending() >= cap for s in self.shards)

    async def _follow(self) -> None:
        assert self.cursor is not None
        while not self._stopping:
            if self._want_shards and self._want_shards != len(self.shards):
                want, self._want_shards = self._want_shards, 0
                await self._reshard(want)
                continue
            if self._full():
                self._space.clear()
                if self._full():
                    self._reader_waited = True
                    try:
                        await asyncio.wait_for(self._space.wait(), 1.0)
                    except TimeoutError:
                        pass
                    continue
            self._data.clear()
            try:
                r = self.cursor.read(READ_BYTES)
            except OSError as exc:
                self._error(f"reading the WAL: {exc}")
                await asyncio.sleep(1.0)
                continue
            for s in r.skipped_segments:
                log.warning("WAL segment removed before it was sent", remote_name=self.remote_name, segment=s)
            if r.corruption and r.corruption != self._last_corruption:
                self._last_corruption = r.corruption
                self._error(f"WAL corruption, rest of segment skipped: {r.corruption}")
                if self.cursor.segment == self.wal.segment and self._on_corrupt_active is not None:
                    self._on_corrupt_active()
            for rec in r.records:
                if rec.type == walrec.SAMPLES:
                    self._dispatch(rec)
                elif rec.type == walrec.HISTOGRAMS:
                    self._dispatch_histograms(rec)
                elif rec.type == walrec.EXEMPLARS:
                    self._dispatch_exemplars(rec)
                elif rec.type == walrec.METADATA:
                    self._learn_metadata(rec)
                self.dispatched = (rec.segment, rec.end, 0)
            self.dispatched = (*self.cursor.position(), 0)
            if r.records:
                now = time.monotonic()
                for s in self.shards:
                    s.touched(now, 0)
                self._m_pending.set(sum(s.pending() for s in self.shards))
                self._dirty.set()
                await asyncio.sleep(0)
                continue
            try:
                await asyncio.wait_for(self._data.wait(), 1.0)
            except TimeoutError:
                pass

    # -------------------------------------------------------------- resharding

    async def _tune_loop(self) -> None:
        interval = self.cfg.queue.shard_update_interval
        last = time.monotonic()
        busy_seen = 0.0
        while True:
            await asyncio.sleep(interval)
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
                self._data.set()
                self._space.set()

    async def _rate_loop(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            self.rate.tick(now - last, self._caught_up)
            last = now

    def _caught_up(self) -> bool:
        """No backlog: the reader is at the WAL's head and no shard has a full batch waiting."""
        return self.dispatched[:2] >= self.wal.head() and not any(s.ready for s in self.shards)

    async def _reshard(self, n: int) -> bool:
        """Drain every shard, commit, then continue with ``n`` shards from the same point.

        Runs in the reader's task between reads, so nothing is dispatched
        meanwhile. Once every shard is idle, all of them are acknowledged up to
        ``dispatched`` (a record boundary) and committed: the routing ``ref %
        shards`` can change without one series ever having samples in two
        shards at once. The new count is committed before the new shards send,
        so a crash at any point leaves a position that matches its shard
        count. A drain that stalls (the backend started failing) is abandoned
        and the old shards simply go on.
        """
        if self._resume is not None or self._stopping:
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

    def _skip_for(self, seg: int, off: int, n: int) -> list[int] | None:
        """Per shard, how many leading samples of this record were acknowledged before a restart."""
        assert self._resume is not None
        out = []
        for s, o, i in self._resume:
            if (s, o) > (seg, off):
                out.append(n + 1)
            elif (s, o) == (seg, off):
                out.append(i)
            else:
                out.append(0)
        if not any(out):
            self._resume = None
            return None
        return out

    def _oldest_ms(self) -> int:
        """The oldest timestamp (ms) still worth sending under ``sample_age_limit``; no limit: the minimum."""
        age = self.cfg.queue.sample_age_limit
        return int((time.time() - age) * 1000) if age > 0 else -(1 << 63)

    def _dispatch(self, rec: Any) -> None:  # noqa: C901 - the hot loop stays in one piece on purpose
        try:
            refs, tss, vals = walrec.decode_samples(rec.payload)
        except walrec.RecordError as exc:
            self._error(f"WAL record at segment {rec.segment} offset {rec.offset}: {exc}")
            return
        n = len(vals)
        if not n:
            return
        shards = self.shards
        low = self._oldest_ms()
        if self._resume is None and self.proto == V1 and dispatch_record(
            shards, rec.segment, rec.offset, refs, tss, vals, self._prefix, low, self._routes
        ):
            return
        ns = len(shards)
        mts = max(tss)
        for s in shards:
            if mts > s.buf_max_ts:
                s.buf_max_ts = mts
        counts = [s.count for s in shards]
        seens = [s.seen for s in shards]
        ixs: list[list[int]] = [[] for _ in shards]
        cache = self._prefix
        maxs = shards[0].max_samples
        seg, off = rec.segment, rec.offset
        skip = self._skip_for(seg, off, n) if self._resume is not None else None
        missing = _MISSING
        dropped = unknown = too_old = dup = 0
        # Series -> timestamp of the batches this record cut: a same-timestamp copy after a cut is dropped too.
        carry: dict[int, int] | None = None
        for i, r, t in zip(range(n), refs, tss, strict=True):
            k = r % ns
            if skip is not None and i < skip[k]:
                continue
            p = cache.get(r, missing)
            if p is missing:
                p = self._series(r)
            if not p:
                if p is None:
                    dropped += 1
                else:
                    unknown += 1
                continue
            if t < low:
                too_old += 1
                continue
            sn = seens[k]
            pt = sn.get(r)
            if pt is not None:  # one sample per series per batch: see the module docstring
                if pt == t:  # the same series twice at one timestamp: keep the first
                    dup += 1
                    continue
                s = shards[k]
                s.count = counts[k]
                s.parts.append((refs, tss, vals, ixs[k]))
                ixs[k] = []
                if carry is None:
                    carry = sn
                else:
                    carry.update(sn)
                s.cut((seg, off, i))
                sn = seens[k] = s.seen
                s.buf_max_ts = mts
                counts[k] = 0
            elif carry is not None and carry.get(r) == t:  # its first copy went into a batch cut above
                dup += 1
                continue
            sn[r] = t
            ixs[k].append(i)
            c = counts[k] + 1
            if c >= maxs:
                s = shards[k]
                s.count = c
                s.parts.append((refs, tss, vals, ixs[k]))
                ixs[k] = []
                if carry is None:
                    carry = seens[k]
                else:
                    carry.update(seens[k])
                s.cut((seg, off, i + 1))
                seens[k] = s.seen
                s.buf_max_ts = mts
                c = 0
            counts[k] = c
        for k, s in enumerate(shards):
            s.count = counts[k]
            if ixs[k]:
                s.parts.append((refs, tss, vals, ixs[k]))
        if dropped:
            self._drop("dropped_series", dropped)
        if unknown:
            self._drop("unintentionally_dropped_series", unknown)
        if too_old:
            self._drop("too_old", too_old)
        if dup:
            self._drop("duplicate_timestamp", dup)

    def _dispatch_histograms(self, rec: Any) -> None:
        """Route native histogram samples like float samples: by series, one per series per batch.

        Without ``send_native_histograms`` they are dropped and counted
        (Prometheus skips them silently; a count says where they went).
        """
        if not self.cfg.send_native_histograms:
            self._drop_hist("native_histograms_disabled", walrec.histograms_count(rec.payload))
            return
        try:
            refs, tss, bodies = walrec.decode_histogram_bodies(rec.payload)
        except walrec.RecordError as exc:
            self._error(f"WAL record at segment {rec.segment} offset {rec.offset}: {exc}")
            return
        n = len(bodies)
        if not n:
            return
        seg, off = rec.segment, rec.offset
        skip = self._skip_for(seg, off, n) if self._resume is not None else None
        low = self._oldest_ms()
        shards = self.shards
        ns = len(shards)
        dropped = unknown = too_old = dup = 0
        for i, r, t, h in zip(range(n), refs, tss, bodies, strict=True):
            k = r % ns
            if skip is not None and i < skip[k]:
                continue
            lb = self._lbytes.get(r)
            if lb is None:
                lb = self._series_bytes(r)
                if lb is None:
                    dropped += 1
                    continue
                if not lb:
                    unknown += 1
                    continue
            if t < low:
                too_old += 1
                continue
            s = shards[k]
            pt = s.seen.get(r)
            if pt is not None:  # one sample per series per batch, histograms included
                if pt == t:  # the same series twice at one timestamp: keep the first
                    dup += 1
                    continue
                s.cut((seg, off, i))
            s.seen[r] = t
            s.hparts.append((r, t, h))
            if t > s.buf_max_ts:
                s.buf_max_ts = t
            s.count += 1
            if s.count >= s.max_samples:
                s.cut((seg, off, i + 1))
        if dropped:
            self._drop_hist("dropped_series", dropped)
        if unknown:
            self._drop_hist("unintentionally_dropped_series", unknown)
        if too_old:
            self._drop_hist("too_old", too_old)
        if dup:
            self._drop_hist("duplicate_timestamp", dup)

    def _dispatch_exemplars(self, rec: Any) -> None:
        """Exemplars go with their series' shard, after its samples; only with ``send_exemplars``."""
        if not self.cfg.send_exemplars:
            return
        try:
            refs, tss, vals, labels = walrec.decode_exemplars(rec.payload)
        except walrec.RecordError as exc:
            self._error(f"WAL record at segment {rec.segment} offset {rec.offset}: {exc}")
            return
        n = len(vals)
        if not n:
            return
        seg, off = rec.segment, rec.offset
        skip = self._skip_for(seg, off, n) if self._resume is not None else None
        low = self._oldest_ms()
        shards = self.shards
        ns = len(shards)
        dropped = 0
        for i in range(n):
            r = refs[i]
            k = r % ns
            if skip is not None and i < skip[k]:
                continue
            lb = self._lbytes.get(r)
            if lb is None:
                lb = self._series_bytes(r)
            t = tss[i]
            if not lb or t < low:
                dropped += 1
                continue
            s = shards[k]
            s.eparts.append((r, t, vals[i], labels[i]))
            s.count += 1
            if s.count >= s.max_samples:
                s.cut((seg, off, i + 1))
        if dropped:
            self.stats.dropped_exemplars += dropped
            m.exemplars_dropped.labels(*self._lv, "dropped").inc(dropped)

    def _series_bytes(self, ref: int) -> bytes | None:
        """Encoded labels of a series for this endpoint: b"" if unknown, None if relabeling dropped it."""
        labels = self._labels(ref)
        if labels is None:
            return b""
        if not labels:
            return None
        lb = self._lbytes[ref] = encode_labels(labels)
        return lb

    # ---------------------------------------------------------------- encoding

    def _encode(self, batch: Batch) -> tuple[bytes, str]:
        """The uncompressed body of ``batch`` in the queue's current protocol."""
        if self.proto == V1:
            # Encoded here, at send time, not while dispatching: a batch waiting to be sent holds
            # its samples as references into the WAL record's columns (~30 B/sample), not as
            # ~150 B/sample of encoded body; the work is the same, done once per attempt.
            return self._encode_v1(batch.parts, batch.hparts, batch.eparts), V1
        series: list[SeriesV2] = []
        tss: list[int] = []
        vals: list[float] = []
        info = self._v2
        for refs, ts, vs, ix in batch.parts:
            for i in ix:
                r = refs[i]
                sv = info.get(r)
                if sv is None:
                    sv = self._series_v2(r)
                series.append(sv)
                tss.append(ts[i])
                vals.append(vs[i])
        hists = [(info.get(r) or self._series_v2(r), t, h) for r, t, h in batch.hparts]
        exs = [(info.get(r) or self._series_v2(r), t, v, lb) for r, t, v, lb in batch.eparts]
        return encode_v2(series, tss, vals, histograms=hists, exemplars=exs), V2

    def _encode_v1(self, parts: list[Part], hparts: list | None = None, eparts: list | None = None) -> bytes:
        out = bytearray()
        self._encode_v1_floats(out, parts)
        for r, t, h in hparts or ():
            out += encode_histogram_timeseries(self._lbytes.get(r) or self._label_bytes(r), t, h)
        for r, t, v, lb in eparts or ():
            out += encode_exemplar_timeseries(self._lbytes.get(r) or self._label_bytes(r), t, v, lb)
        return bytes(out)

    def _encode_v1_floats(self, out: bytearray, parts: list[Part]) -> None:
        prefixes = self._prefix
        for refs, ts, vs, ix in parts:
            if encode_part(out, refs, ts, vs, ix, prefixes):
                continue
            for i in ix:
                r = refs[i]
                tf = ts_field(ts[i])
                p = self._prefix.get(r) or self._series(r)
                if tf and p:
                    out += p
                    out += pack_double(vs[i])
                    out += tf
                elif p:
                    out += encode_timeseries(self._label_bytes(r), ts[i], vs[i])
                # else: the series left the WAL's tables while the batch waited; no labels to send

    def _series_v2(self, ref: int) -> SeriesV2:
        labels = self._labels(ref) or ()
        strings = tuple(x for pair in labels for x in pair)
        meta = None
        name = next((v for k, v in labels if k == "__name__"), "")
        fam = family_of(name, self._meta) if self._meta else None
        if fam is not None:
            mtype, help_, unit = self._meta[fam]
            meta = (METRIC_TYPES.get(mtype, 0), help_, unit)
        sv = self._v2[ref] = SeriesV2(strings, meta)
        return sv

    def _expire(self, batch: Batch) -> Batch | None:
        """Before a retry: drop the samples now older than ``sample_age_limit`` (counted as too_old).

        Returns the batch unchanged, a smaller one, or None when nothing is left.
        """
        age = self.cfg.queue.sample_age_limit
        if age <= 0 or not (batch.parts or batch.hparts or batch.eparts):
            return batch
        cutoff = int((time.time() - age) * 1000)
        kept: list[Part] = []
        old = 0
        for refs, ts, vs, ix in batch.parts:
            keep = [i for i in ix if ts[i] >= cutoff]
            old += len(ix) - len(keep)
            if keep:
                kept.append((refs, ts, vs, keep))
        hkept = [x for x in batch.hparts if x[1] >= cutoff]
        ekept = [x for x in batch.eparts if x[1] >= cutoff]
        hold = len(batch.hparts) - len(hkept)
        eold = len(batch.eparts) - len(ekept)
        if not (old or hold or eold):
            return batch
        if old:
            self._drop("too_old", old)
        if hold:
            self._drop_hist("too_old", hold)
        if eold:
            self.stats.dropped_exemplars += eold
            m.exemplars_dropped.labels(*self._lv, "too_old").inc(eold)
        if not (kept or hkept or ekept):
            return None
        body = self._encode_v1(kept, hkept, ekept) if self.proto == V1 else b""
        return Batch(body, batch.count - old - hold - eold, batch.end, batch.max_ts, kept, hkept, ekept)

    def _series(self, ref: int) -> bytes | None:
        labels = self._labels(ref)
        if labels is None:
            self._prefix[ref] = b""
            return b""
        if not labels:
            self._prefix[ref] = None
            return None
        p = sample_prefix(encode_labels(labels))
        self._prefix[ref] = p
        return p

    def _labels(self, ref: int) -> Labels | None:
        """The series as this endpoint sends it: None if unknown, () if relabeling dropped it."""
        labels = self.wal.labels_by_ref.get(ref)
        if labels is None:
            return None
        if self._ext:
            have = {n for n, _ in labels}
            extra = tuple(p for p in self._ext if p[0] not in have)
            if extra:
                labels = tuple(sorted(labels + extra))
        if self._relabel is not None:
            out = self._relabel(labels, self._rules)
            if not out:
                return ()
            labels = out
        return tuple(p for p in labels if p[1] != "")

    def _label_bytes(self, ref: int) -> bytes:
        return encode_labels(self._labels(ref) or ())

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
            self._error(f"{result.reason}: {result.detail}; {batch.count} samples dropped")
        else:
            nh, ne = len(batch.hparts), len(batch.eparts)
            ns = batch.count - nh - ne
            st.sent += ns
            st.histograms_sent += nh
            st.exemplars_sent += ne
            self.tuner.samples_out.incr(batch.count)
            w, wh, _we = result.written
            if w is not None and w < ns and self.proto == V2:
                # A 2.0 receiver said it kept fewer samples than were sent: the rest is gone.
                self._drop("not_written", ns - w)
                self._error(f"receiver wrote {w} of {ns} samples")
            if wh is not None and wh < nh and self.proto == V2:
                self._drop_hist("not_written", nh - wh)
                self._error(f"receiver wrote {wh} of {nh} histograms")
            if batch.max_ts > self._highest_sent:
                self._highest_sent = batch.max_ts
        self._space.set()
        self._dirty.set()

    def _drop(self, reason: str, n: int) -> None:
        self.stats.dropped[reason] = self.stats.dropped.get(reason, 0) + n
        self.tuner.samples_dropped.incr(n)
        m.samples_dropped.labels(*self._lv, reason).inc(n)

    def _drop_hist(self, reason: str, n: int) -> None:
        self.stats.dropped_histograms[reason] = self.stats.dropped_histograms.get(reason, 0) + n
        self.tuner.samples_dropped.incr(n)
        m.histograms_dropped.labels(*self._lv, reason).inc(n)

    def _error(self, msg: str, warn: bool = True) -> None:
        self.stats.last_error = msg
        self.stats.last_error_time = time.time()
        if warn:
            log.warning("remote write", remote_name=self.remote_name, url=self.safe_url, error=msg)

    # --------------------------------------------------------------- positions

    def position(self) -> Position:
        """What is acknowledged now: per shard, its last acked batch, or everything read if it is idle."""
        d = self.dispatched
        return Position([max(s.acked, d) if s.idle() else s.acked for s in self.shards])

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
            if self._committed is not None and pos.points == self._committed.points:
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

    def settled(self) -> bool:
        """Every acknowledgement so far is durably committed."""
        c = self._committed
        return c is not None and c.points == self.position().points

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
            "metadata_families": len(self._meta),
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
