"""The WAL writer: series refs, batched appends, rotation, fsync, replay, truncation.

One ``WAL`` owns one directory. ``append`` runs on the caller's thread (the
event loop) and costs one dict look-up per sample plus one ``write()`` per
batch into the page cache; ``sync`` (fsync) is meant for a worker thread. The
fsync policy is the owner's: ``RemoteWrite`` syncs the active segment at most
every second while it is dirty, and every finished segment when it is rotated
out (docs/wal.md says what that means for a power cut).

Series identity: each label set gets a ref (a counter that never goes back,
even across restarts, because replay continues from the largest ref seen)
and its labels are written once, in a series record before the first samples
record that uses the ref. Series are kept in two generations; ``new_generation``
(called at each truncation) retires the series nobody appended to during a
whole period, remembering the segment they died in, so a checkpoint keeps
their labels exactly as long as some segment can still mention them.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from agent.labels import AnyLabels, Labels, as_encoded
from agent.wal import checkpoint as ckpt
from agent.wal import record
from agent.wal import segment as seg
from agent.wal.metrics import WALMetrics
from agent.wal.reader import read_all
from agent.wal.reftable import RefTable

log = structlog.get_logger("wal")
ROUTE_MIN = 64  # samples in a batch before its refs are kept for the next one
ROUTES_MAX_SAMPLES = 1 << 20  # refs kept that way, in all (~16 bytes each)


@dataclass(slots=True)
class ReplayReport:
    series: int
    segments: int
    corruptions: list[str]
    first_segment: int
    open_segment: int


class WALWriteError(Exception):
    """A batch could not be written (disk full, I/O error); it was dropped and counted."""

    def __init__(self, reason: str, samples: int) -> None:
        super().__init__(f"WAL write failed ({reason}); {samples} samples dropped")
        self.reason = reason
        self.samples = samples


class WAL:
    def __init__(self, directory: Path, *, segment_size: int = seg.SEGMENT_SIZE,
                 registry: CollectorRegistry | None = None) -> None:
        self.directory = Path(directory)
        self.segment_size = segment_size
        self.metrics = WALMetrics(registry)  # None: a private registry
        # ref -> encoded labels (agent/labels.py), read on a reader's first sight of a ref
        self.labels_by_ref = RefTable()
        # Series are keyed by their encoded labels: the scrape cache's own objects, so a
        # scrape's series cost no copy here, and an endpoint may send the same bytes.
        self._cur: dict[bytes, int] = {}
        self._prev: dict[bytes, int] = {}
        self._prev_top = 0  # the most entries _prev has held since it was last built (see _revive)
        self._dead: dict[int, int] = {}  # ref -> segment that was active when it was retired
        self._next_ref = 1
        self._fd = -1
        self._segment = -1
        self._offset = 0
        self._dirty = False
        self._to_close: list[int] = []  # finished segments' fds, synced and closed by sync()
        self._lock = threading.Lock()  # guards _to_close and fd hand-over between loop and sync thread
        self.opened = False
        self.last_error = ""
        # For the cluster's proof of progress: a stuck fsync shows while it is stuck.
        self._fsync_since = 0.0  # monotonic start of the fsync under way; 0: none
        self._fsync_last = 0.0  # seconds the last one took
        m = self.metrics
        self._m_records = m.records
        self._m_bytes = m.record_bytes
        self._m_appended = m.samples_appended
        self._meta_written: dict[str, tuple[str, str, str]] = {}  # family -> (type, help, unit) this process
        self._meta_last: object = None  # the last metadata dict seen: scrapes hand the same one on
        # A scrape appends the same label tuples in the same order every time: its refs, keyed
        # by (length, id of the first label set) and checked by list equality (see append).
        self._routes: dict[tuple[int, int], tuple[list[AnyLabels], array]] = {}
        self._routes_size = 0

    # ------------------------------------------------------------------ open

    def open(self) -> ReplayReport:
        """Repair, replay and open a fresh segment. Blocking: run it in a thread."""
        t0 = time.monotonic()
        self.directory.mkdir(parents=True, exist_ok=True)
        corruptions: list[str] = []
        cp, series, status = ckpt.read_checkpoint(self.directory)
        for ref, labels in series:
            self._remember(ref, labels)
        if status != "eof":
            corruptions.append(f"checkpoint.{cp:08d}: {status}")
        segs = [s for s in seg.list_segments(self.directory) if s > cp]
        for s in segs:
            path = seg.segment_path(self.directory, s)
            r = read_all(path, 0, decode=True, types=frozenset({record.SERIES}))
            for rec in r.records:
                try:
                    for ref, labels in record.decode_series(rec.payload):
                        self._remember(ref, labels)
                except record.RecordError as exc:
                    corruptions.append(f"segment {s} offset {rec.offset}: {exc}")
            if r.status != "eof":
                # Cut at the last good frame: a torn tail from a crash mid-write,
                # or a bad frame after which nothing in this segment can be trusted.
                size = path.stat().st_size
                os.truncate(path, r.end)
                msg = f"segment {s} offset {r.end}: {r.status}, cut {size - r.end} bytes"
                corruptions.append(msg)
        for c in corruptions:
            log.warning("wal corruption repaired", dir=str(self.directory), detail=c)
            self.metrics.corruptions.inc()
            self.metrics.agent_corruptions.inc()
        # Everything replayed is "previous generation": it becomes current when appended to.
        self._prev, self._cur = self._cur, {}
        self._prev_top = len(self._prev)
        last = max(segs[-1] if segs else cp, cp)
        self._open_segment(last + 1)
        seg.fsync_dir(self.directory)
        self.opened = True
        self.metrics.replay_duration.set(time.monotonic() - t0)
        self.metrics.active_series.set(len(self.labels_by_ref))
        first = segs[0] if segs else self._segment
        return ReplayReport(len(self.labels_by_ref), len(segs), corruptions, first, self._segment)

    def _remember(self, ref: int, labels: Labels) -> None:
        key = as_encoded(labels)
        self.labels_by_ref[ref] = key
        self._cur[key] = ref
        if ref >= self._next_ref:
            self._next_ref = ref + 1

    def _open_segment(self, index: int) -> None:
        path = seg.segment_path(self.directory, index)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._segment = index
        self._offset = os.fstat(self._fd).st_size
        self.metrics.segment_current.set(index)

    # ---------------------------------------------------------------- append

    def append(
        self,
        labels: Sequence[AnyLabels],
        timestamps: Sequence[int],
        values: Sequence[float],
        metadata: Mapping[str, Any] | None = None,
        histograms: Sequence[tuple[AnyLabels, int, Any]] | None = None,
        exemplars: Sequence[tuple[AnyLabels, int, float, Labels]] | None = None,
    ) -> int:
        """Write one batch as (at most) a series, a metadata, a samples, a histograms and an exemplars record, in one write().

        ``metadata`` maps family names to objects with ``type``, ``help`` and
        ``unit`` (agent.storage.Metadata); only new or changed families are written.
        ``histograms`` are ``(labels, ts, agent.storage.Histogram)``, ``exemplars``
        ``(series labels, ts, value, exemplar labels)``, as in SampleBatch.

        Returns the number of float samples written. Raises ``WALWriteError`` when the
        write failed; the batch is then gone (counted), and the file is cut back
        so no partial frame stays behind for later frames to hide behind.
        """
        n = len(values)
        if n == 0 and not histograms and not exemplars:
            return 0
        cur = self._cur
        get = cur.get
        new: list[tuple[int, bytes]] = []
        route_key = (n, id(labels[0])) if n >= ROUTE_MIN else None
        route = self._routes.get(route_key) if route_key else None  # type: ignore[arg-type]
        if route is not None and route[0] == labels:
            refs: Any = route[1]
            route_key = None
        else:
            refs = list(map(get, labels))
            if None in refs:
                for i, r in enumerate(refs):
                    if r is None:
                        refs[i] = self._ref_slow(labels[i], new)
            refs = array("Q", refs)
        parts = []
        hist_payload = ex_payload = b""
        if histograms:
            hist_payload = record.encode_histograms(
                [(get(lb) or self._ref_slow(lb, new), ts, h) for lb, ts, h in histograms]
            )
        if exemplars:
            ex_payload = record.encode_exemplars(
                [get(e[0]) or self._ref_slow(e[0], new) for e in exemplars],
                [e[1] for e in exemplars], [e[2] for e in exemplars], [e[3] for e in exemplars],
            )
        if new:
            parts.append(seg.frame(record.SERIES, bytes(record.compress(record.encode_series(new)))))
        meta_new: list[tuple[str, str, str, str]] = []
        if metadata and metadata is not self._meta_last:
            written = self._meta_written
            for name, md in metadata.items():
                t = (md.type, md.help, md.unit)
                if written.get(name) != t:
                    meta_new.append((name, *t))
            if meta_new:
                parts.append(seg.frame(record.METADATA, bytes(record.compress(record.encode_metadata(meta_new)))))
        if n:
            payload = record.encode_samples(refs, timestamps, values)
            parts.append(seg.frame(record.SAMPLES, bytes(record.compress(payload))))
        if hist_payload:
            parts.append(seg.frame(record.HISTOGRAMS, bytes(record.compress(hist_payload))))
        if ex_payload:
            parts.append(seg.frame(record.EXEMPLARS, bytes(record.compress(ex_payload))))
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        try:
            self._write(data)
        except OSError as exc:
            for ref, lb in new:
                cur.pop(lb, None)
                self.labels_by_ref.pop(ref, None)
            reason = "disk_full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "io_error"
            self.last_error = f"{reason}: {exc.strerror or exc}"
            self.metrics.writes_failed.inc()
            self.metrics.samples_dropped.labels(reason).inc(n + len(histograms or ()))
            raise WALWriteError(reason, n + len(histograms or ())) from exc
        if route_key is not None:
            self._remember_route(route_key, labels, refs)
        if metadata:
            self._meta_last = metadata
            for name, *t in meta_new:
                self._meta_written[name] = tuple(t)  # type: ignore[assignment]
        self._m_records.inc(len(parts))
        self._m_bytes.inc(len(data))
        self._m_appended.inc(n)
        if histograms:
            self.metrics.histograms_appended.inc(len(histograms))
        if exemplars:
            self.metrics.exemplars_appended.inc(len(exemplars))
        if new:
            self.metrics.active_series.set(len(self.labels_by_ref))
        return n

    def ref_of(self, labels: AnyLabels) -> int | None:
        """The ref of a live series (current generation), as the very int object the tables hold.

        Readers keying their own per-series tables by it share the int instead of holding
        a copy read back from a record (~30 B a series).
        """
        return self._cur.get(as_encoded(labels))

    def _remember_route(self, key: tuple[int, int], labels: Sequence[AnyLabels], refs: array) -> None:
        """Keep a batch's refs for the next batch with the same label sets in the same order.

        A scrape hands the same label tuple objects every time (the scrape cache's), so the
        next batch of that target is checked against this copy with one C-level list
        comparison that stops at identity per element, instead of hashing every label set
        again (~9 % of the process under the heavy load). Valid while the refs stay in the
        current generation: ``new_generation`` drops them all. Bounded in samples.
        """
        if self._routes_size + len(refs) > ROUTES_MAX_SAMPLES:
            self._routes.clear()
            self._routes_size = 0
        old = self._routes.get(key)
        if old is not None:
            self._routes_size -= len(old[1])
        self._routes[key] = (list(labels), refs)
        self._routes_size += len(refs)

    def _ref_slow(self, labels: AnyLabels, new: list[tuple[int, bytes]]) -> int:
        """The ref of a series not in the current generation: revived from the previous one, or new.

        Label sets given as tuples (not from a scrape cache) are encoded here, once per append.
        """
        cur = self._cur
        lb = as_encoded(labels)
        r = cur.get(lb)
        if r is None:
            r = self._revive(lb)
            if r is None:
                r = self._next_ref
                self._next_ref += 1
                self.labels_by_ref[r] = lb
                new.append((r, lb))
            cur[lb] = r
        return r

    def _revive(self, lb: bytes) -> int | None:
        """Take a series out of the previous generation, if it is there.

        A dict never shrinks as entries are popped: after a truncation, every series
        appended again leaves the previous generation's table at its full size (52 B a
        series, ~10 MiB at 200,000), held empty until the next truncation. Once it holds
        less than a quarter of its most, it is copied into a table of its size (amortised:
        each copy is paid for by the pops before it).
        """
        prev = self._prev
        r = prev.pop(lb, None)
        if r is not None and len(prev) * 4 < self._prev_top:
            self._prev = dict(prev)
            self._prev_top = len(prev)
        return r

    def ref(self, labels: AnyLabels) -> int | None:
        """The ref of a series this WAL holds in its current or previous generation."""
        key = as_encoded(labels)
        r = self._cur.get(key)
        return r if r is not None else self._prev.get(key)

    def retire(self, labels: Sequence[AnyLabels]) -> None:
        """Series another agent writes now (clustering handoff): retired at the next truncation.

        They move to the previous generation, as if not appended to for a period, so the
        next truncation forgets them instead of the one after; appended to again (the
        target came back), they keep their ref.
        """
        cur, prev = self._cur, self._prev
        for lb in map(as_encoded, labels):
            r = cur.pop(lb, None)
            if r is not None:
                prev[lb] = r
        self._prev_top = max(self._prev_top, len(prev))

    def _write(self, data: bytes) -> None:
        if self._offset > 0 and self._offset + len(data) > self.segment_size:
            self.rotate()
        start = self._offset
        view = memoryview(data)
        try:
            while view:
                k = os.write(self._fd, view)
                view = view[k:]
        except OSError:
            try:
                os.ftruncate(self._fd, start)
            except OSError as exc2:  # pragma: no cover - nothing better to do than say so
                log.error("wal: could not cut back a failed write", error=str(exc2))
            raise
        self._offset = start + len(data)
        self._dirty = True

    # -------------------------------------------------------------- rotation

    def head(self) -> tuple[int, int]:
        """Where the next record will be written: (segment, offset)."""
        return self._segment, self._offset

    @property
    def segment(self) -> int:
        return self._segment

    def rotate(self) -> int:
        """Start the next segment; the finished one is fsynced and closed by the next ``sync``."""
        with self._lock:
            if self._fd >= 0:
                self._to_close.append(self._fd)
            self._open_segment(self._segment + 1)
            self._dirty = True
        return self._segment

    def sync(self) -> float:
        """fsync finished segments and the active one. Safe from a worker thread; returns seconds spent."""
        with self._lock:
            closing, self._to_close = self._to_close, []
            fd = os.dup(self._fd) if self._fd >= 0 else -1
            self._dirty = False
        t0 = self._fsync_since = time.monotonic()
        for f in [*closing, fd]:
            if f < 0:
                continue
            try:
                os.fsync(f)
            except OSError as exc:
                # Nothing to retry: after a failed fsync the kernel may have dropped the
                # pages. Say so loudly and count; the writes themselves already succeeded.
                self.last_error = f"fsync: {exc.strerror or exc}"
                self.metrics.writes_failed.inc()
                log.error("wal fsync failed", dir=str(self.directory), error=str(exc))
            finally:
                os.close(f)
        if closing:
            seg.fsync_dir(self.directory)
        spent = time.monotonic() - t0
        self._fsync_since, self._fsync_last = 0.0, spent
        self.metrics.fsync_duration.observe(spent)
        return spent

    def fsync_seconds(self) -> float:
        """How long the fsync under way has taken so far, else how long the last one took."""
        since = self._fsync_since
        return time.monotonic() - since if since else self._fsync_last

    @property
    def dirty(self) -> bool:
        return self._dirty or bool(self._to_close)

    def close(self) -> None:
        """Sync and close. Blocking."""
        if self._fd < 0:
            return
        self.sync()
        with self._lock:
            os.close(self._fd)
            self._fd = -1

    # ------------------------------------------------------------ truncation

    def new_generation(self) -> list[int]:
        """Retire series not appended to since the last call; returns their refs."""
        retired = list(self._prev.values())
        for ref in retired:
            self._dead[ref] = self._segment
        self._prev, self._cur = self._cur, {}
        self._prev_top = len(self._prev)
        self._routes.clear()  # their refs must be looked up (and so revived) again
        self._routes_size = 0
        return retired

    def checkpoint_series(self, upto: int) -> tuple[list[tuple[int, bytes]], list[int]]:
        """Series a checkpoint at ``upto`` must keep, and the refs that can be forgotten.

        Call on the loop; forgetting happens here. A retired series is kept
        while its last segment is newer than ``upto``.
        """
        gone = [ref for ref, s in self._dead.items() if s <= upto]
        for ref in gone:
            del self._dead[ref]
            self.labels_by_ref.pop(ref, None)
        self.metrics.active_series.set(len(self.labels_by_ref))
        return self.labels_by_ref.items(), gone

    def write_checkpoint(self, upto: int, series: list[tuple[int, bytes]]) -> int:
        """Write ``checkpoint.upto`` and delete what it replaces. Blocking; returns bytes freed."""
        self.metrics.truncations.inc()
        self.metrics.checkpoint_creations.inc()
        if upto >= self._segment:
            raise ValueError(f"cannot truncate the active segment {self._segment}")
        try:
            ckpt.write_checkpoint(self.directory, upto, series)
            return ckpt.delete_old(self.directory, upto)
        except OSError:
            self.metrics.truncations_failed.inc()
            raise

    def segments(self) -> list[int]:
        return seg.list_segments(self.directory)

    def size(self) -> int:
        size = seg.dir_size(self.directory)
        self.metrics.storage_size.set(size)
        return size
