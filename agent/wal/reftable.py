"""The WAL's ref -> encoded labels table, as two columns sorted by ref instead of a dict.

Every live series has an entry, but the table is read only when a reader
meets a ref for the first time and when a checkpoint is written; the hot
path (labels -> ref, per sample) is the writer's dict. A dict entry with its
int key costs ~52 B a series here; a ref in an ``array`` and a slot in a
list cost 16, and the labels are the scrape cache's own encoded label sets
(agent/labels.py ``encode``) either way.
Refs are handed out in increasing order, so new entries are appended; a
look-up is a binary search (~1 us), which nobody does per sample.

Entries removed (refs forgotten at truncation) leave a hole until holes are
half the table, then the columns are compacted, so the cost stays linear in
the live series whatever the churn.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from itertools import repeat
from operator import eq, sub


class RefTable(Mapping[int, bytes]):
    __slots__ = ("_refs", "_labels", "_holes", "_sorted")

    def __init__(self) -> None:
        self._refs = array("Q")
        self._labels: list[bytes | None] = []
        self._holes = 0
        self._sorted = True

    def _index(self, ref: int) -> int:
        """The position of ``ref``, or -1."""
        if not self._sorted:
            self._compact()
        refs = self._refs
        i = bisect_left(refs, ref)
        return i if i < len(refs) and refs[i] == ref else -1

    def __setitem__(self, ref: int, labels: bytes) -> None:
        refs = self._refs
        if self._sorted and (not refs or ref > refs[-1]):
            refs.append(ref)
            self._labels.append(labels)
            return
        i = self._index(ref)
        if i >= 0:
            if self._labels[i] is None:
                self._holes -= 1
            self._labels[i] = labels
        else:  # an older ref learnt late (replay of an unusual WAL): sorted before the next look-up
            self._refs.append(ref)  # not ``refs``: the look-up may have compacted into new columns
            self._labels.append(labels)
            self._sorted = False

    def get(self, ref: int, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        i = self._index(ref)
        if i < 0:
            return default
        got = self._labels[i]
        return default if got is None else got

    def get_many(self, refs: Sequence[int]) -> list[bytes | None]:
        """The labels of each of ``refs`` (None for a ref not held), by C-level binary searches.

        For a reader that keeps no table of its own and looks up a target's series once
        (agent/remote/series.py ``WalPrefixes``): ~0.1 us a ref for a run of consecutive refs,
        else a binary search each (0.6-0.9 us at 200,000 series; a dict's get is 0.05-0.12).
        """
        if not self._sorted:
            self._compact()
        col = self._refs
        n = len(col)
        if not n or not refs:
            return [None] * len(refs)
        # A target's series are usually given refs one after another: if the column holds every
        # ref from the lowest asked to the highest (its ends say so, refs being sorted and
        # distinct), each ref's position is the ref minus one offset.
        lo, hi = min(refs), max(refs)
        p = bisect_left(col, lo)
        q = p + hi - lo
        if q < n and col[p] == lo and col[q] == hi:
            return list(map(self._labels.__getitem__, map(sub, refs, repeat(lo - p))))
        idx = list(map(bisect_left, repeat(col), refs, repeat(0), repeat(n - 1)))  # always an index
        got = list(map(self._labels.__getitem__, idx))
        if all(map(eq, map(col.__getitem__, idx), refs)):
            return got
        return [g if col[i] == r else None for i, r, g in zip(idx, refs, got, strict=True)]

    def __getitem__(self, ref: int) -> bytes:
        got = self.get(ref)
        if got is None:
            raise KeyError(ref)
        return got

    def pop(self, ref: int, default: bytes | None = None) -> bytes | None:
        i = self._index(ref)
        if i < 0 or self._labels[i] is None:
            return default
        got = self._labels[i]
        self._labels[i] = None
        self._holes += 1
        if self._holes * 2 > len(self._refs):
            self._compact()
        return got

    def _compact(self) -> None:
        """Drop holes, and sort by ref if a ref came out of order."""
        keep = [(r, lb) for r, lb in zip(self._refs, self._labels, strict=True) if lb is not None]
        if not self._sorted:
            keep.sort(key=lambda e: e[0])
            self._sorted = True
        self._refs = array("Q", [r for r, _ in keep])
        self._labels = [lb for _, lb in keep]
        self._holes = 0

    def __len__(self) -> int:
        return len(self._refs) - self._holes

    def __iter__(self) -> Iterator[int]:
        if not self._sorted:
            self._compact()
        return (r for r, lb in zip(self._refs, self._labels, strict=True) if lb is not None)

    def __contains__(self, ref: object) -> bool:
        return isinstance(ref, int) and self.get(ref) is not None

    def items(self) -> list[tuple[int, bytes]]:  # type: ignore[override]
        """A list in ref order, not a view: checkpoints take it as it is now."""
        if not self._sorted:
            self._compact()
        return [(r, lb) for r, lb in zip(self._refs, self._labels, strict=True) if lb is not None]
