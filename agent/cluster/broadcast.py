"""Gossip waiting to be piggybacked: each message goes out a bounded number of times.

Messages are kept encoded and keyed by the member they are about, so a newer
message about a member replaces an older one still queued. The least-sent go
first; a message is dropped after ``limit(n)`` transmissions (lambda * log n,
enough for an epidemic to reach every member with high probability).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Entry:
    body: bytes
    size: int
    transmits: int
    order: int


class BroadcastQueue:
    def __init__(self, limit: Callable[[], int], framed_size: Callable[[bytes], int]) -> None:
        self._limit = limit
        self._framed_size = framed_size
        self._by_name: dict[str, _Entry] = {}
        self._counter = itertools.count()

    def __len__(self) -> int:
        return len(self._by_name)

    def queue(self, about: str, body: bytes) -> None:
        self._by_name[about] = _Entry(body, self._framed_size(body), 0, next(self._counter))

    def pending(self, about: str) -> bool:
        """Whether a message about this member has not yet been sent even once."""
        e = self._by_name.get(about)
        return e is not None and e.transmits == 0

    def take(self, budget: int) -> list[bytes]:
        """Messages that fit in ``budget`` bytes, least-transmitted (then newest) first."""
        if not self._by_name or budget <= 0:
            return []
        limit = self._limit()
        out: list[bytes] = []
        ranked = sorted(self._by_name.items(), key=lambda kv: (kv[1].transmits, -kv[1].order))
        for name, e in ranked:
            if e.size > budget:
                continue
            budget -= e.size
            out.append(e.body)
            e.transmits += 1
            if e.transmits >= limit:
                del self._by_name[name]
            if budget < 8:
                break
        return out
