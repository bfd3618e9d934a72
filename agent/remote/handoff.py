"""Handoffs in the queue: unsent samples of a series another agent now writes are dropped.

When clustering moves a target to another agent, this agent's scrape pool
appends a handoff marker (``agent.storage.HANDOFF_NAN``) for each of the
target's series, stamped with a cut-off: samples of the series older than it
may reach the backend after the new owner's newer ones (the agent stalled with
them unsent, or its queue is behind), and Prometheus would refuse them as out
of order. A queue learns of markers three ways, so none is missed:

- when they are appended (``RemoteWrite`` passes the refs on at once): the
  shards' waiting batches are purged now, and samples still unread in the WAL
  are dropped when the watcher reaches them;
- when the watcher reads them (a marker is never sent; the series' encodings
  are freed);
- at start, by scanning the unsent part of the WAL (``scan``), so a crash
  between the marker and the send changes nothing.

Only samples *before* the marker in the WAL are dropped: what the agent
appends after it got the target back is newer than anything the other agent
wrote and is sent as usual. A batch is filtered right before each send (a
first send or a retry, after any rate gate or backoff it waited at); one
already on the wire cannot be recalled. After a stall of the event loop a
shard sends only once the stall is settled (agent/loopclock.py): the cluster
has written the markers the stall called for, in that order, not after a
guessed delay.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agent.storage import HANDOFF_BYTES, is_handoff_nan
from agent.wal import record as walrec
from agent.wal import segment as walseg
from agent.wal.reader import read_all

REASON = "handed_off"

WalPoint = tuple[int, int]  # (segment, offset) of a WAL record boundary


def marker_indexes(vals: array) -> list[int]:
    """Indexes of handoff markers in a WAL record's values column.

    A scrape pool appends a target's markers as one batch, and relabeling keeps a
    subset of a batch in order, so markers come in records of their own: a record
    whose first value is not one holds none, and one look per record is enough
    (a byte search of every record cost ~11 ns a sample).
    """
    if not vals:
        return []
    v = vals[0]
    if v == v or not is_handoff_nan(v):
        return []
    return [i for i, x in enumerate(vals) if x != x and is_handoff_nan(x)]


def _find(b: bytes, base: int) -> list[int]:
    out: list[int] = []
    pos = b.find(HANDOFF_BYTES, base)
    while pos >= 0:
        if (pos - base) % 8 == 0:
            out.append((pos - base) // 8)
            pos = b.find(HANDOFF_BYTES, pos + 8)
        else:
            pos = b.find(HANDOFF_BYTES, pos + 1)
    return out


def scan(directory: Path, start: WalPoint, end: WalPoint) -> list[tuple[WalPoint, list[int], list[int]]]:
    """Markers in the WAL from ``start`` to ``end``: per record, its end point, refs and cut-offs.

    Blocking (run it in a thread). Only records holding the marker's bytes are decoded.
    """
    out: list[tuple[WalPoint, list[int], list[int]]] = []
    for s in walseg.list_segments(directory):
        if s < start[0] or s > end[0]:
            continue
        r = read_all(walseg.segment_path(directory, s), start[1] if s == start[0] else 0,
                     types=frozenset({walrec.SAMPLES}))
        for rec in r.records:
            p = rec.payload
            n = walrec.samples_count(p)
            if len(p) != 4 + 24 * n or p.find(HANDOFF_BYTES, 4 + 16 * n) < 0:
                continue
            refs, tss, _vals = walrec.decode_samples(p)
            ix = _find(p, 4 + 16 * n)
            if ix:
                out.append(((s, rec.end), [refs[i] for i in ix], [tss[i] for i in ix]))
    return out


class Handoffs:
    """Per series ref, the latest marker: its end point in the WAL and its cut-off (ms).

    A sample of the ref at a WAL point before the end, older than the cut-off, is
    dropped. Entries go once every shard has acknowledged past their end: nothing
    that precedes them can be sent any more.
    """

    __slots__ = ("table", "_order")

    def __init__(self) -> None:
        self.table: dict[int, tuple[WalPoint, int]] = {}
        self._order: deque[tuple[WalPoint, list[int]]] = deque()  # in WAL order, for expiry

    def __len__(self) -> int:
        return len(self.table)

    def note(self, end: WalPoint, refs: Iterable[int], cutoffs: Iterable[int]) -> list[int]:
        """Record markers ending at ``end``; returns the refs taken (a later marker wins)."""
        table = self.table
        taken: list[int] = []
        for r, c in zip(refs, cutoffs, strict=True):
            prev = table.get(r)
            if prev is None or end >= prev[0]:
                table[r] = (end, c)
                taken.append(r)
        if taken:
            self._order.append((end, taken))
        return taken

    def expire(self, acked: WalPoint) -> None:
        """Forget markers every shard has acknowledged past (``acked``: the lowest shard point)."""
        order = self._order
        table = self.table
        while order and order[0][0] <= acked:
            end, refs = order.popleft()
            for r in refs:
                e = table.get(r)
                if e is not None and e[0] == end:
                    del table[r]

    def drops(self, seg: int, off: int, refs: array, tss: array) -> list[int]:
        """Indexes of a WAL record's samples that a marker after it drops."""
        table = self.table
        if table.keys().isdisjoint(refs):
            return []
        here = (seg, off)
        out = []
        for i, r in enumerate(refs):
            e = table.get(r)
            if e is not None and here < e[0] and tss[i] < e[1]:
                out.append(i)
        return out

    def filter_parts(self, parts: list[Any], before: WalPoint | None = None,
                     only: set[int] | None = None) -> tuple[list[Any], int]:
        """Parts of a batch without the samples the markers drop; the count dropped.

        ``before``: the end of the batch; markers ending at or before it may come after
        some of its samples, so they are not applied (None: every marker is later).
        ``only``: apply the markers of these refs alone (those just appended).
        """
        table = self.table
        if only is not None:
            table = {r: table[r] for r in only if r in table}
        if not table:
            return parts, 0
        kept: list[Any] = []
        dropped = 0
        for part in parts:
            refs, tss, vals, ix = part[:4]
            keep = []
            for i in ix:
                e = table.get(refs[i])
                if e is not None and tss[i] < e[1] and (before is None or before < e[0]):
                    continue
                keep.append(i)
            if len(keep) == len(ix):
                kept.append(part)
                continue
            dropped += len(ix) - len(keep)
            if keep:
                kept.append((refs, tss, vals, keep, None))  # prefixes matched the whole part
        return kept, dropped

    def filter_items(self, items: list[Any], before: WalPoint | None = None,
                     only: set[int] | None = None) -> tuple[list[Any], int]:
        """Native histograms ``(ref, ts, body)`` or exemplars ``(ref, ts, value, labels)`` of a
        batch without those the markers drop (an exemplar goes with its sample); the count dropped.

        ``before`` and ``only`` as for ``filter_parts``.
        """
        table = self.table
        if only is not None:
            table = {r: table[r] for r in only if r in table}
        if not table or not items:
            return items, 0
        kept = []
        for item in items:
            e = table.get(item[0])
            if e is not None and item[1] < e[1] and (before is None or before < e[0]):
                continue
            kept.append(item)
        return kept, len(items) - len(kept)
