"""RemoteWrite: the WAL plus one queue per endpoint, as one Appendable.

This is the whole engine behind ``prometheus.remote_write``: scrapes append
batches (written to the WAL at once, on the caller's thread, one write() per
batch), each endpoint's queue follows the WAL from its own durable position,
and a truncation loop checkpoints and deletes what every endpoint has sent.
It knows nothing of components; the component builds the settings and calls
``start``, ``update``, ``stop`` and ``status``.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from agent.loopclock import LoopClock
from agent.remote.admission import Admission
from agent.remote.config import EndpointConfig, WALOptions
from agent.remote.dispatch import FLOATS
from agent.remote.metrics import RemoteMetrics
from agent.remote.position import Position, PositionStore
from agent.remote.queue import EndpointQueue, QueueStats
from agent.storage import SampleBatch, is_handoff_nan
from agent.wal import WAL, WALWriteError
from agent.wal import record as walrec
from agent.wal import segment as walseg
from agent.wal.reader import read_all

log = structlog.get_logger("remote.write")

FSYNC_INTERVAL = 1.0  # the power-cut window for appended samples (docs/wal.md)
PRESTART_LIMIT = 1_000_000  # samples held in memory before start(); beyond it, dropped and counted
STOP_GRACE = 5.0
BUDGET_INTERVAL = 1.0  # how often the disk budget is checked: the WAL may exceed it by ~1 s of appends
MIN_BUDGET_SEGMENT = 1 << 20
ADMISSION_INTERVAL = 1.0  # how often the queues' backlogs are judged (agent/remote/admission.py)


def segment_size_for(options: WALOptions) -> int:
    """Segments of a quarter of the disk budget (at most 128 MiB), so it is enforced in fine steps."""
    if options.disk_budget_bytes <= 0:
        return walseg.SEGMENT_SIZE
    return max(MIN_BUDGET_SEGMENT, min(walseg.SEGMENT_SIZE, options.disk_budget_bytes // 4))


class RemoteWrite:
    def __init__(
        self,
        directory: Path,
        endpoints: list[EndpointConfig],
        external_labels: dict[str, str],
        wal: WALOptions,
        registry: CollectorRegistry | None = None,
        clock: LoopClock | None = None,
    ) -> None:
        self.directory = Path(directory)
        # The process' loop clock: a queue sends after a stall only once the handoffs it called
        # for are written (agent/loopclock.py); None: each queue's own.
        self.clock = clock
        self.endpoints = list(endpoints)
        self.external_labels = dict(external_labels)
        self.options = wal
        # The component's registry (the runtime adds component_id); None: a private one.
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.metrics = RemoteMetrics(self.registry)
        self.wal = WAL(self.directory, segment_size=segment_size_for(wal), registry=self.registry)
        self.store = PositionStore(self.directory / "positions")
        self.queues: dict[str, EndpointQueue] = {}
        self._prestart: list[SampleBatch] = []
        self._prestart_n = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._fsync_wake: asyncio.Event | None = None
        self._started = False
        self._stopped = False
        self._last_truncate = time.monotonic()
        self._write_error_logged = 0.0
        self._m_highest = self.metrics.highest_timestamp
        self._highest_ts = 0
        self.last_truncation: dict[str, Any] = {}
        self._truncating = asyncio.Lock()  # one truncation or budget pass at a time
        self.admitter = Admission()

    # ------------------------------------------------------------- appending

    def append(self, batch: SampleBatch) -> None:
        """Write a batch to the WAL now; queues pick it up from there. Never raises for I/O trouble."""
        n = len(batch.values) + len(batch.histograms)
        if (not n and not batch.exemplars) or self._stopped:
            return
        if not self._started:
            if self._prestart_n + n > PRESTART_LIMIT:
                self.wal.metrics.samples_dropped.labels("not_started").inc(n)
                return
            self._prestart.append(batch)
            self._prestart_n += n
            return
        self._write(batch)

    def admission(self) -> float:
        """The share of scrape ticks producers are asked to make (agent/storage.py's ``admission``)."""
        return self.admitter.share

    def _write(self, batch: SampleBatch) -> None:
        try:
            self.wal.append(batch.labels, batch.timestamps, batch.values, batch.metadata,
                            batch.histograms or None, batch.exemplars or None)
        except WALWriteError as exc:
            now = time.monotonic()
            if now - self._write_error_logged > 10:
                self._write_error_logged = now
                log.error("WAL write failed, batch dropped", dir=str(self.directory), reason=exc.reason,
                          samples=exc.samples, error=self.wal.last_error)
            return
        n = len(batch.values)
        mts = max(batch.timestamps) if n else 0
        if batch.histograms:
            n += len(batch.histograms)
            mts = max(mts, max(h[1] for h in batch.histograms))
        if mts > self._highest_ts:
            self._highest_ts = mts
            self._m_highest.set(mts / 1000.0)
        vals = batch.values
        if vals and vals[0] != vals[0]:  # a NaN first: stale markers, or a batch of handoff markers
            self._handed_off(batch)
        for q in self.queues.values():
            q.note_appended(n, mts)
        if self._fsync_wake is not None:
            self._fsync_wake.set()

    def _handed_off(self, batch: SampleBatch) -> None:
        """Handoff markers were written: the queues purge what they hold of those series now.

        A scrape pool appends the markers of a target in a batch of their own
        (agent/scrape/pool.py), so a batch is looked into only when its first value is one.
        """
        ix = [i for i, v in enumerate(batch.values) if is_handoff_nan(v)]
        if not ix:
            return
        labels = [batch.labels[i] for i in ix]
        refs = [self.wal.ref(lb) for lb in labels]
        known = [(r, batch.timestamps[i]) for r, i in zip(refs, ix, strict=True) if r is not None]
        end = self.wal.head()
        for q in self.queues.values():
            q.dispatch.handed_off(end, [r for r, _ in known], [t for _, t in known])
        self.wal.retire(labels)

    # ------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        report = await asyncio.to_thread(self.wal.open)
        log.info("WAL replayed", dir=str(self.directory), series=report.series, segments=report.segments,
                 corruptions=len(report.corruptions))
        start_at = self.wal.head()
        self._started = True
        pre, self._prestart, self._prestart_n = self._prestart, [], 0
        for b in pre:
            self._write(b)
        for ep in self.endpoints:
            await self._start_queue(ep, start_at)
        self._fsync_wake = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._fsync_loop(), name="wal-fsync"),
            asyncio.create_task(self._truncate_loop(), name="wal-truncate"),
            asyncio.create_task(self._budget_loop(), name="wal-budget"),
            asyncio.create_task(self._admission_loop(), name="wal-admission"),
        ]

    async def _start_queue(self, ep: EndpointConfig, start_at: tuple[int, int], stats: QueueStats | None = None) -> None:
        q = EndpointQueue(ep, self.wal, self.store, self.external_labels, metrics=self.metrics,
                          stats=stats, on_corrupt_active=self._rotate_after_corruption, clock=self.clock)
        self.queues[q.key] = q
        await q.start(start_at)

    def _rotate_after_corruption(self) -> None:
        """A bad frame in the active segment: new data goes to a fresh segment, past it."""
        self.wal.rotate()
        for q in self.queues.values():
            q.wake()

    async def update(self, endpoints: list[EndpointConfig], external_labels: dict[str, str], wal: WALOptions) -> None:
        """Apply new settings; the WAL stays. Added endpoints start now, changed ones keep their position."""
        self.options = wal
        self.wal.segment_size = segment_size_for(wal)
        ext_changed = dict(external_labels) != self.external_labels
        self.external_labels = dict(external_labels)
        if not self._started:
            self.endpoints = list(endpoints)
            return
        old = {ep.key(): ep for ep in self.endpoints}
        new = {ep.key(): ep for ep in endpoints}
        self.endpoints = list(endpoints)
        for key in old.keys() - new.keys():
            q = self.queues.pop(key)
            await q.stop(STOP_GRACE)
            self.store.delete(key)  # a removed endpoint must not hold back truncation
        for key, ep in new.items():
            if key in old and old[key] == ep and not ext_changed:
                continue
            if key in self.queues:
                q = self.queues.pop(key)
                await q.stop(STOP_GRACE)
                await self._start_queue(ep, self.wal.head(), q.stats)
            else:
                self.store.delete(key)
                await self._start_queue(ep, self.wal.head())

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop sending (in-flight requests get ``grace`` seconds), then sync and close the WAL."""
        if self._stopped:
            return
        self._stopped = True
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(q.stop(grace) for q in self.queues.values()), return_exceptions=True)
        if self._started:
            await asyncio.to_thread(self.wal.close)

    def write_progress(self) -> tuple[float, float]:
        """(WAL fsync seconds, worst endpoint lag seconds): what the cluster gossips as progress."""
        lag = max((q.lag_seconds() for q in self.queues.values()), default=0.0)
        return self.wal.fsync_seconds(), lag

    # ------------------------------------------------------------- admission

    async def _admission_loop(self) -> None:
        m = self.metrics
        while True:
            await asyncio.sleep(ADMISSION_INTERVAL)
            was = self.admitter.shedding
            share = self.admitter.tick(time.monotonic(), {k: q.backlog() for k, q in self.queues.items()})
            m.admission_share.set(share)
            m.shedding.set(1 if self.admitter.shedding else 0)
            if self.admitter.shedding != was:
                if was:
                    log.info("remote write keeps up again: every scrape is made", dir=str(self.directory))
                else:
                    log.warning("shedding load: scrapes skipped", dir=str(self.directory),
                                reason=self.admitter.reason)

    # ----------------------------------------------------------------- fsync

    async def _fsync_loop(self) -> None:
        assert self._fsync_wake is not None
        while True:
            await self._fsync_wake.wait()
            self._fsync_wake.clear()
            if self.wal.dirty:
                await asyncio.to_thread(self.wal.sync)
            await asyncio.sleep(FSYNC_INTERVAL)

    # ------------------------------------------------------------ truncation

    async def _truncate_loop(self) -> None:
        while True:
            await asyncio.sleep(min(60.0, max(1.0, self.options.truncate_frequency)))
            if time.monotonic() - self._last_truncate < self.options.truncate_frequency:
                continue
            self._last_truncate = time.monotonic()
            try:
                await self.truncate()
            except Exception as exc:  # noqa: BLE001 - truncation failing must not stop the agent
                self.wal.metrics.truncations_failed.inc()
                log.error("WAL truncation failed", dir=str(self.directory), error=str(exc))
            await asyncio.to_thread(self.wal.size)

    async def truncate(self, now: float | None = None) -> int:
        """Checkpoint and delete the segments every endpoint has sent (bounded by the keepalive times).

        Returns the last segment deleted, or -1. A segment is deleted when every
        endpoint's durable position is past it and it is older than
        ``min_keepalive_time``, or, whatever the endpoints, when it is older than
        ``max_keepalive_time``: endpoints that had not sent it then skip it and
        count its samples as dropped.
        """
        async with self._truncating:
            return await self._truncate(now)

    async def _truncate(self, now: float | None) -> int:
        now = time.time() if now is None else now
        if self.wal.head()[1] > 0:
            self.wal.rotate()  # so the data of this period can go at the next one
        self.wal.new_generation()
        active = self.wal.segment
        lows = {k: (q.committed() or Position([(0, 0, 0)])).low() for k, q in self.queues.items()}
        sizes: dict[int, int] = {}

        def sent_by(low: tuple[int, int], s: int) -> bool:
            # Past segment s, or at the very end of it (s is finished: the reader just
            # has not looked for its successor yet).
            return low[0] > s or (low[0] == s and low[1] >= sizes[s])

        upto = -1
        for s in self.wal.segments():
            if s >= active:
                break
            try:
                st = os.stat(walseg.segment_path(self.directory, s))
            except FileNotFoundError:
                continue
            sizes[s] = st.st_size
            sent = all(sent_by(low, s) for low in lows.values())
            old_enough = st.st_mtime <= now - self.options.min_keepalive_time
            if (sent and old_enough) or st.st_mtime <= now - self.options.max_keepalive_time:
                upto = s
            else:
                break
        self.last_truncation = {"time": now, "upto": upto, "active": active}
        if upto < 0:
            return -1
        await self._delete_upto(upto, lows, sizes, "wal_truncated")
        return upto

    async def _delete_upto(
        self, upto: int, lows: dict[str, tuple[int, int]], sizes: dict[int, int], reason: str
    ) -> None:
        """Checkpoint and delete segments ``<= upto``; endpoints that had not sent them skip ahead.

        What a skipping endpoint loses is counted as dropped with ``reason``
        (``wal_truncated`` for max_keepalive_time, ``disk_budget``).
        """

        def sent_by(low: tuple[int, int], s: int) -> bool:
            return low[0] > s or (low[0] == s and low[1] >= sizes.get(s, 0))

        for key, (s, o) in lows.items():
            if key not in self.queues or sent_by((s, o), upto):
                continue
            q = self.queues[key]
            lost = await asyncio.to_thread(self._count_samples, (s, o), upto)
            await q.stop(0)
            q.dropped(FLOATS, reason, lost)
            log.warning("WAL data deleted before it was sent", reason=reason, remote_name=q.remote_name,
                        samples=lost)
            n = len(q.committed().points) if q.committed() else 1
            await asyncio.to_thread(self.store.save, key, Position.uniform(upto + 1, 0, n))
            del self.queues[key]
            ep = next(e for e in self.endpoints if e.key() == key)
            await self._start_queue(ep, self.wal.head(), q.stats)
        keep, gone = self.wal.checkpoint_series(upto)
        for q in self.queues.values():
            q.forget(gone)
        freed = await asyncio.to_thread(self.wal.write_checkpoint, upto, keep)
        log.info("WAL truncated", dir=str(self.directory), upto=upto, reason=reason, series_kept=len(keep),
                 series_forgotten=len(gone), bytes_freed=freed)

    # ----------------------------------------------------------- disk budget

    async def _budget_loop(self) -> None:
        while True:
            await asyncio.sleep(BUDGET_INTERVAL)
            if self.options.disk_budget_bytes <= 0:
                continue
            try:
                await self.enforce_disk_budget()
            except Exception as exc:  # noqa: BLE001 - the budget failing must not stop the agent
                self.wal.metrics.truncations_failed.inc()
                log.error("WAL disk budget enforcement failed", dir=str(self.directory), error=str(exc))

    async def enforce_disk_budget(self) -> int:
        """Delete the oldest segments, sent or not, until the WAL fits ``disk_budget_bytes``.

        Returns the last segment deleted, or -1. The active segment is rotated
        out first when it alone is over budget, so it can go at the next call.
        """
        async with self._truncating:
            return await self._enforce_disk_budget()

    async def _enforce_disk_budget(self) -> int:
        budget = self.options.disk_budget_bytes
        if budget <= 0:
            return -1
        total = await asyncio.to_thread(walseg.dir_size, self.directory)
        if total <= budget:
            return -1
        active = self.wal.segment
        sizes: dict[int, int] = {}
        upto = -1
        for s in self.wal.segments():
            if s >= active:
                break
            try:
                sizes[s] = os.stat(walseg.segment_path(self.directory, s)).st_size
            except FileNotFoundError:
                continue
            total -= sizes[s]
            upto = s
            if total <= budget:
                break
        if total > budget and self.wal.head()[1] > 0:
            self.wal.rotate()  # the rest is the active segment: finish it so the next pass can drop it
        if upto < 0:
            return -1
        dropped = len(sizes)
        self.wal.metrics.segments_dropped.labels("disk_budget").inc(dropped)
        lows = {k: (q.committed() or Position([(0, 0, 0)])).low() for k, q in self.queues.items()}
        log.warning("WAL over its disk budget: dropping the oldest segments", dir=str(self.directory),
                    budget=budget, segments=dropped, upto=upto)
        await self._delete_upto(upto, lows, sizes, "disk_budget")
        self.last_truncation = {"time": time.time(), "upto": upto, "active": active, "reason": "disk_budget"}
        return upto

    def _count_samples(self, start: tuple[int, int], upto: int) -> int:
        total = 0
        for s in self.wal.segments():
            if s < start[0] or s > upto:
                continue
            r = read_all(walseg.segment_path(self.directory, s), start[1] if s == start[0] else 0,
                         types=frozenset({walrec.SAMPLES, walrec.HISTOGRAMS}))
            # Both records start with their count; histogram samples are counted as samples.
            total += sum(walrec.samples_count(rec.payload) for rec in r.records)
        return total

    # ---------------------------------------------------------------- status

    def status(self) -> dict[str, Any]:
        segs = self.wal.segments()
        return {
            "wal": {
                "directory": str(self.directory),
                "segments": len(segs),
                "first_segment": segs[0] if segs else None,
                "current_segment": self.wal.segment,
                "size_bytes": walseg.dir_size(self.directory),
                "series": len(self.wal.labels_by_ref),
                "last_error": self.wal.last_error,
                "last_truncation": dict(self.last_truncation),
            },
            "endpoints": [q.status() for q in self.queues.values()],
            "admission": self.admitter.status(),
        }

    async def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queue has sent everything appended so far (tests, shutdown helpers)."""
        deadline = time.monotonic() + timeout
        head = self.wal.head()
        while time.monotonic() < deadline:
            if all(
                q.dispatched[:2] >= head and q.pending() == 0 and q.settled() for q in self.queues.values()
            ):
                return True
            for q in self.queues.values():
                q.wake()
                for s in q.shards:
                    s.flush_soon()
            await asyncio.sleep(0.02)
        return False

