"""Dispatch: the samples, histograms and exemplars of WAL records into the shards' open batches.

Every sample goes to shard ``ref % shards``, so a series always goes through
the same shard and keeps its order. What is sent, and what is dropped and
counted, is decided here, for the three kinds of records by one loop:

- after a restart, samples a shard had already acknowledged are skipped
  (the position keeps, per shard, the record and index it reached);
- series the WAL does not know, or that write relabeling drops, are dropped;
- samples older than ``sample_age_limit`` are dropped (``too_old``);
- handoff markers are never sent, and the samples of a series another agent
  took over that precede its marker and are older than its cut-off are
  dropped (``handed_off``, agent/remote/handoff.py), also from batches
  waiting in the shards and, right before each send or retry, from the
  batch about to leave;
- a batch holds at most one sample per series (floats and histograms, not
  exemplars): a repeat at a later timestamp cuts the batch, a repeat at the
  same timestamp (relabeling made two series identical) is dropped keeping
  the first (``duplicate_timestamp``), even when a cut came between them;
- except while catching up after a failure or a stall (``multi``, set by the queue):
  then a repeat at a later timestamp joins the batch (several samples per
  series, in timestamp order, which Remote-Write 1.0 and 2.0 allow) and the
  shard marks the batch (``repeats``), so its send is announced durably first;
- after a restart whose position holds such an announcement (``layered``),
  each shard sends up to the announced end with the one-sample rule and cuts
  exactly there, so the re-sent range is split into requests that each hold
  one sample per series and nothing else.

Those rules are what make resending after a crash safe towards backends that
refuse out-of-order samples (see agent/remote/queue.py).

Scrape-shaped float records skip the per-sample loop (agent/remote/fastpath.py)
and give the same batches. Nothing is encoded here: batches hold references
into the records' columns and are encoded when sent (agent/remote/encode.py).
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Sequence
from typing import Any

from agent.loopclock import LoopClock
from agent.remote import handoff
from agent.remote.fastpath import Routes, dispatch_record
from agent.remote.handoff import Handoffs, WalPoint
from agent.remote.position import Point
from agent.remote.series import SeriesTable
from agent.remote.shards import Batch, Part, Shard

FLOATS, HISTOGRAMS, EXEMPLARS = "samples", "histograms", "exemplars"
SERIES_REASONS = ("dropped_series", "unintentionally_dropped_series", "too_old")
EXEMPLAR_REASONS = ("dropped", "dropped", "dropped")  # exemplars are counted under one reason
DUPLICATE = "duplicate_timestamp"
_MISSING = object()

Dropped = Callable[[str, str, int], None]  # (kind, reason, count)
Flush = Callable[[Shard, list[int]], None]  # a shard takes these indexes of the record into its open batch


class Dispatcher:
    """Routes records into ``shards`` (the queue replaces the list when it reshards)."""

    def __init__(self, series: SeriesTable, sample_age_limit: float, dropped: Dropped,
                 clock: LoopClock | None = None) -> None:
        self.series = series
        self.sample_age_limit = sample_age_limit
        self.dropped = dropped
        self.shards: list[Shard] = []
        self.resume: list[Point] | None = None  # per shard, where it was acknowledged before a restart
        self.routes = Routes()  # the fast path's routing per target's series list
        self.fast = True  # the fast path builds 1.0-only state: off for a 2.0 queue
        self.multi = False  # catching up: a batch may hold several samples per series
        self.layered: list[Point | None] | None = None  # per shard, an announced end to resend up to
        self.handoffs = Handoffs()  # series other agents took over: see agent/remote/handoff.py
        # The process' loop clock (``shoal run``'s, shared with the cluster); alone, one of its own
        # that nobody else subscribes to, so every stall it finds is settled at once.
        self.clock = clock if clock is not None else LoopClock()

    def reset_routes(self) -> None:
        """Refs were forgotten or the shard count changed: routes stand for series that may be gone."""
        self.routes.reset(len(self.shards))

    def oldest_ms(self) -> int:
        """The oldest timestamp (ms) still worth sending under ``sample_age_limit``; no limit: the minimum."""
        age = self.sample_age_limit
        return int((time.time() - age) * 1000) if age > 0 else -(1 << 63)

    # --------------------------------------------------------- the three kinds

    def samples(self, seg: int, off: int, refs: array, tss: array, vals: array) -> None:
        low = self.oldest_ms()
        omit: dict[int, bool] | None = None  # record indexes not sent -> counted as handed_off
        marks = handoff.marker_indexes(vals)
        if marks:
            self._markers_read(refs, marks)
            omit = dict.fromkeys(marks, False)
        if self.handoffs:
            drops = self.handoffs.drops(seg, off, refs, tss)
            if drops:
                omit = omit or {}
                for i in drops:
                    omit.setdefault(i, True)
        if omit is None and self.fast and self.resume is None and self.layered is None and dispatch_record(
            self.shards, seg, off, refs, tss, vals, self.series.prefix, low, self.routes, self.multi
        ):
            return

        def flush(s: Shard, ix: list[int]) -> None:
            s.parts.append((refs, tss, vals, ix, None))

        prefix = self.series.prefix
        # Read from the WAL's table (WalPrefixes): this record's at once, not a binary search per sample.
        cache = prefix if isinstance(prefix, dict) else dict(zip(refs, prefix.many(refs), strict=True))
        self._route(seg, off, refs, tss, low, cache, self.series.resolve_prefix,
                    True, FLOATS, SERIES_REASONS, flush, omit)

    def histograms(self, seg: int, off: int, refs: array, tss: array, bodies: list[Any]) -> None:
        def flush(s: Shard, ix: list[int]) -> None:
            s.hparts.extend([(refs[i], tss[i], bodies[i]) for i in ix])

        self._route(seg, off, refs, tss, self.oldest_ms(), self.series.lbytes, self.series.resolve_bytes,
                    True, HISTOGRAMS, SERIES_REASONS, flush, self._handed_off_in(seg, off, refs, tss))

    def exemplars(self, seg: int, off: int, refs: array, tss: array, vals: array, labels: list[Any]) -> None:
        """Exemplars go with their series' shard, after its samples."""

        def flush(s: Shard, ix: list[int]) -> None:
            s.eparts.extend([(refs[i], tss[i], vals[i], labels[i]) for i in ix])

        self._route(seg, off, refs, tss, self.oldest_ms(), self.series.lbytes, self.series.resolve_bytes,
                    False, EXEMPLARS, EXEMPLAR_REASONS, flush, self._handed_off_in(seg, off, refs, tss))

    def _handed_off_in(self, seg: int, off: int, refs: array, tss: array) -> dict[int, bool] | None:
        """A record's items a later handoff marker drops (counted), as ``_route``'s ``omit``."""
        if not self.handoffs:
            return None
        drops = self.handoffs.drops(seg, off, refs, tss)
        return dict.fromkeys(drops, True) if drops else None

    # ------------------------------------------------------------- the skeleton

    def _route(  # noqa: C901 - the hot loop stays in one piece on purpose
        self,
        seg: int,
        off: int,
        refs: array,
        tss: array,
        low: int,
        cache: dict[int, Any],
        resolve: Callable[[int], bytes | None],
        samples: bool,
        kind: str,
        reasons: tuple[str, str, str],
        flush: Flush,
        omit: dict[int, bool] | None = None,
    ) -> None:
        """One record's items into the shards' open batches, in record order per shard.

        ``cache`` / ``resolve``: the series table's encoded labels for the kind (truthy: send,
        b"": unknown, None: dropped by relabeling). ``samples``: the items are samples (one
        per series per batch, their timestamps are the batch's); exemplars are not.
        ``omit``: record indexes not sent (handoff markers: False; samples they drop: True, counted).
        """
        shards = self.shards
        n = len(refs)
        ns = len(shards)
        mts = max(tss) if samples else 0
        if samples:
            for s in shards:
                if mts > s.max_ts:
                    s.max_ts = mts
        counts = [s.count for s in shards]
        seens = [s.seen for s in shards]
        ixs: list[list[int]] = [[] for _ in shards]
        maxs = shards[0].max_samples
        skip = self._skip_for(seg, off, n) if self.resume is not None else None
        missing = _MISSING
        lay = self.layered if samples else None
        multi = self.multi and samples and lay is None
        dropped = unknown = too_old = dup = handed = 0
        # Series -> timestamp of the batches this record cut: a same-timestamp copy after a cut is dropped too.
        carry: dict[int, int] | None = None
        for i, r, t in zip(range(n), refs, tss, strict=True):
            k = r % ns
            if skip is not None and i < skip[k]:
                continue
            if omit is not None and i in omit:
                handed += omit[i]
                continue
            if lay is not None and lay[k] is not None and (seg, off, i) >= lay[k]:  # type: ignore[operator]
                lay[k] = None  # the announced end: cut here, what follows is new
                s = shards[k]
                if counts[k]:
                    s.count = counts[k]
                    flush(s, ixs[k])
                    ixs[k] = []
                    s.cut((seg, off, i))
                    seens[k] = s.seen
                    s.max_ts = mts
                    counts[k] = 0
                if not any(e is not None for e in lay):
                    self.layered = None
            p = cache.get(r, missing)
            if p is missing:
                p = resolve(r)
            if not p:
                if p is None:
                    dropped += 1
                else:
                    unknown += 1
                continue
            if t < low:
                too_old += 1
                continue
            if samples:
                sn = seens[k]
                pt = sn.get(r)
                if pt is not None:  # one sample per series per batch: see the module docstring
                    if pt == t:  # the same series twice at one timestamp: keep the first
                        dup += 1
                        continue
                    if multi and t > pt:  # catching up: a later sample joins the batch, in order
                        shards[k].repeats = True
                    else:
                        s = shards[k]
                        s.count = counts[k]
                        flush(s, ixs[k])
                        ixs[k] = []
                        if carry is None:
                            carry = sn
                        else:
                            carry.update(sn)
                        s.cut((seg, off, i))
                        sn = seens[k] = s.seen
                        s.max_ts = mts
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
                flush(s, ixs[k])
                ixs[k] = []
                if samples:
                    if carry is None:
                        carry = seens[k]
                    else:
                        carry.update(seens[k])
                s.cut((seg, off, i + 1))
                seens[k] = s.seen
                if samples:
                    s.max_ts = mts
                c = 0
            counts[k] = c
        for k, s in enumerate(shards):
            s.count = counts[k]
            if ixs[k]:
                flush(s, ixs[k])
        for reason, c in zip((*reasons, DUPLICATE, handoff.REASON), (dropped, unknown, too_old, dup, handed),
                             strict=True):
            if c:
                self.dropped(kind, reason, c)

    # ------------------------------------------------------------------ handoffs

    def handed_off(self, end: WalPoint, refs: list[int], cutoffs: list[int]) -> int:
        """Markers were just appended (ending at WAL point ``end``): purge the shards' waiting batches.

        The open batch and the cut batches waiting to be sent lose the samples, native
        histograms and exemplars the markers drop (counted); the watcher drops those it has not
        read yet when it reaches them. Returns the number purged here.
        """
        taken = set(self.handoffs.note(end, refs, cutoffs))
        if not taken:
            return 0
        counts = [0, 0, 0]  # floats, histograms, exemplars
        for s in self.shards:
            if s.count:
                s.parts, s.hparts, s.eparts, n = self._purge(s.parts, s.hparts, s.eparts, None, taken, counts)
                if n:
                    s.count -= n
                    if not s.count:
                        s.first_at = 0.0  # its deadline starts again with the next sample
                    seen = s.seen
                    for r in taken:
                        t = seen.get(r)
                        if t is not None and t < self.handoffs.table[r][1]:
                            del seen[r]
            if s.ready:
                kept = []
                for b in s.ready:
                    parts, hparts, eparts, n = self._purge(b.parts, b.hparts, b.eparts, None, taken, counts)
                    if n:
                        b = Batch(b.count - n, b.end, b.max_ts, parts, hparts, eparts, b.repeats)
                        if not b.count:
                            continue  # a later batch, or the shard going idle, acknowledges past it
                    kept.append(b)
                s.ready.clear()
                s.ready.extend(kept)
        self._count_handed_off(counts)
        return sum(counts)

    def _purge(self, parts: list[Part], hparts: list[Any], eparts: list[Any], before: WalPoint | None,
               only: set[int] | None, counts: list[int]) -> tuple[list[Part], list[Any], list[Any], int]:
        """A batch's three kinds without what the markers drop; ``counts`` per kind grows."""
        h = self.handoffs
        parts, nf = h.filter_parts(parts, before, only) if parts else (parts, 0)
        hparts, nh = h.filter_items(hparts, before, only)
        eparts, ne = h.filter_items(eparts, before, only)
        counts[0] += nf
        counts[1] += nh
        counts[2] += ne
        return parts, hparts, eparts, nf + nh + ne

    def _count_handed_off(self, counts: list[int]) -> None:
        for kind, n in zip((FLOATS, HISTOGRAMS, EXEMPLARS), counts, strict=True):
            if n:
                self.dropped(kind, handoff.REASON, n)

    def expire_handoffs(self, acked: WalPoint) -> None:
        """Every shard acknowledged past ``acked``: markers before it have nothing left to drop."""
        if self.handoffs:
            self.handoffs.expire(acked)

    def _markers_read(self, refs: array, marks: list[int]) -> None:
        """The watcher reached markers: those series' encodings are freed (found again if sent again)."""
        self.series.forget([refs[i] for i in marks])
        self.reset_routes()

    async def settle(self, batch: Batch) -> Batch | None:
        """Right before a batch leaves (a first send or a retry): without the samples handed off.

        After a stall of the loop, first wait until the clock says it is settled: a stalled
        agent's targets may have been taken over meanwhile, the cluster writes the markers that
        say so when it hears of the stall, and this batch must not leave before them.
        """
        if not self.clock.is_settled() or self.clock.check() is not None:
            await self.clock.settled()
        return self._without_handed_off(batch)

    def _without_handed_off(self, batch: Batch) -> Batch | None:
        if not self.handoffs:
            return batch
        counts = [0, 0, 0]
        parts, hparts, eparts, n = self._purge(batch.parts, batch.hparts, batch.eparts, batch.end[:2], None,
                                               counts)
        if not n:
            return batch
        self._count_handed_off(counts)
        if batch.count == n:
            return None
        return Batch(batch.count - n, batch.end, batch.max_ts, parts, hparts, eparts, batch.repeats)

    def _skip_for(self, seg: int, off: int, n: int) -> list[int] | None:
        """Per shard, how many leading samples of this record were acknowledged before a restart."""
        assert self.resume is not None
        out = []
        for s, o, i in self.resume:
            if (s, o) > (seg, off):
                out.append(n + 1)
            elif (s, o) == (seg, off):
                out.append(i)
            else:
                out.append(0)
        if not any(out):
            self.resume = None
            return None
        return out

    # ------------------------------------------------------------------ retries

    def expire(self, batch: Batch) -> Batch | None:
        """Before a retry: drop the samples now older than ``sample_age_limit`` (counted as too_old).

        Returns the batch unchanged, a smaller one, or None when nothing is left.
        """
        age = self.sample_age_limit
        if age <= 0 or not (batch.parts or batch.hparts or batch.eparts):
            return batch
        cutoff = int((time.time() - age) * 1000)
        kept: list[Part] = []
        old = 0
        for part in batch.parts:
            refs, ts, vs, ix, ps = part
            keep: Sequence[int] = [i for i in ix if ts[i] >= cutoff]
            old += len(ix) - len(keep)
            if len(keep) == len(ix):
                kept.append(part)
            elif keep:
                kept.append((refs, ts, vs, keep, None))
        hkept = [x for x in batch.hparts if x[1] >= cutoff]
        ekept = [x for x in batch.eparts if x[1] >= cutoff]
        hold = len(batch.hparts) - len(hkept)
        eold = len(batch.eparts) - len(ekept)
        if not (old or hold or eold):
            return batch
        for kind, c in ((FLOATS, old), (HISTOGRAMS, hold), (EXEMPLARS, eold)):
            if c:
                self.dropped(kind, "too_old", c)
        if not (kept or hkept or ekept):
            return None
        return Batch(batch.count - old - hold - eold, batch.end, batch.max_ts, kept, hkept, ekept)
