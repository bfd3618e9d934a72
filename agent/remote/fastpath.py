"""The reader's fast path: a scrape-shaped samples record routed and encoded with C-level operations.

Most WAL samples records are one scrape: every sample has the same
timestamp, every series is known and sent, no series repeats, and none of
them is already in its shard's open batch. For such a record nothing needs a
Python-level step per sample: the shard order and slices and the series'
prefixes in that order come from ``Routes`` (once per target's series list),
and the "one sample per series per batch" rule is one ``isdisjoint`` and one
``dict.update`` per shard. The RW 1.0 body is built when the batch is sent
(``encode_part``: one ``bytes.join`` over the part's prefixes, the packed
values and the shared timestamp field interleaved by extended slice
assignment), so batches waiting to be sent hold no encoded bytes, only
references to prefixes. Everything else (stale
timestamps, unknown or relabel-dropped series, repeats, a restart's skip
points, 2.0) returns False and takes the general loop in ``dispatch.py``,
which gives the same batches a sample at a time.

Batches are cut exactly where the general loop would cut them: at
``max_samples_per_send``, and at the first series of the record already in
the shard's open batch; a record holding a series that is in the open batch
*at the same timestamp* goes to the general loop, which drops that copy.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any, Protocol

from agent.remote.codec import pack_double, ts_field
from agent.remote.shards import Part, Shard

ROUTES_MAX_SAMPLES = 1 << 20  # routes kept per queue, counted in samples (~24 bytes each)
# Shared int objects for the routes' record indexes: every target's route holds indexes
# 0..n-1, so without sharing each route held its own ints (28 B each, ~5.6 MB at 200k series).
# Grown to the largest record routed (capped), not built whole at import: 65,536 ints were
# 2.6 MB of every process, also of agents that scrape a few hundred series.
_INTS_MAX = 1 << 16
_INTS: list[int] = []
# itemgetter (None: one shard), record indexes in shard order, bounds per shard, and the
# series' RW 1.0 prefixes in that order (what encode_part joins with the values).
Route = tuple[Any, Sequence[int], list[tuple[int, int, int]], list[bytes]]


class Prefixes(Protocol):
    """An endpoint's RW 1.0 prefix per ref (agent/remote/series.py): bytes to send, b"" or None not."""

    def get(self, ref: int, default: Any = None, /) -> bytes | None: ...

    def many(self, refs: Sequence[int], /) -> list[bytes | None]: ...


class Routes:
    """Per series list (a record's refs, as bytes) and shard count: how its samples go to the shards.

    A target's scrapes append the same refs in the same order at every scrape, so
    sorting them by shard, checking them for repeats and finding each shard's
    slice is done once per target and reused (~200 ns/sample saved with 8
    shards). The route also keeps the series' prefixes in shard order, so sending
    does not look each one up again in the table of every series (memory-bound:
    encode 457 -> 190 ns/sample over 200k series and 8 shards). A route is only
    valid for one shard count: ``reset`` on resharding.
    """

    __slots__ = ("by_refs", "size", "ns")

    def __init__(self) -> None:
        self.by_refs: dict[bytes, Route | None] = {}
        self.size = 0
        self.ns = 0

    def reset(self, ns: int) -> None:
        self.by_refs = {}
        self.size = 0
        self.ns = ns

    def route(self, refs: array, ns: int, prefixes: Prefixes) -> Route | None:
        """How this record's samples go to shards, or None if a series repeats in it or is not sent.

        A route is kept only for refs whose series all have a prefix (known and not dropped by
        relabeling): a prefix never changes while its ref lives, and the queue resets the routes
        when it forgets refs, so a kept route also stands for that check (a dict look-up per
        sample in a table of every series, memory-bound: ~3 % of the process under the heavy load).
        """
        if ns != self.ns:
            self.reset(ns)
        key = refs.tobytes()
        got = self.by_refs.get(key, _MISSING)
        if got is not _MISSING:
            return got  # type: ignore[return-value]
        ps = prefixes.many(refs)
        if not all(ps):  # unknown yet, relabel-dropped, or not in the WAL's series table
            return None  # not kept: the general loop resolves them, the next scrape is routed here
        n = len(refs)
        r: Route | None = None
        if len(set(refs)) == n:
            if ns == 1:
                r = (None, range(n), [(0, 0, n)], ps)  # type: ignore[list-item]
            else:
                ks = [x % ns for x in refs]
                order = sorted(range(n), key=ks.__getitem__)
                if n <= _INTS_MAX:
                    if n > len(_INTS):
                        _INTS.extend(range(len(_INTS), n))
                    order = list(map(_INTS.__getitem__, order))
                sk = sorted(ks)
                bounds = []
                lo = 0
                for k in range(ns):
                    hi = bisect_right(sk, k, lo)
                    if hi > lo:
                        bounds.append((k, lo, hi))
                    lo = hi
                get = itemgetter(*order)
                r = (get, tuple(order), bounds, list(get(ps)))
        if self.size + n > ROUTES_MAX_SAMPLES:
            self.by_refs = {}
            self.size = 0
        self.by_refs[key] = r
        self.size += n
        return r


_MISSING = object()


def dispatch_record(
    shards: list[Shard],
    seg: int,
    off: int,
    refs: array,
    tss: array,
    vals: array,
    prefixes: Prefixes,
    low: int,
    routes: Routes,
    multi: bool = False,
) -> bool:
    """Route and encode one samples record if it is scrape-shaped; False (nothing done) if not.

    ``multi``: catching up, a series already in a shard's open batch at an older timestamp
    joins it (``t`` not below the shard's ``max_ts`` says every sample there is older).
    """
    n = len(vals)
    t = tss[0]
    if n < 2 or t < low or tss.count(t) != n:
        return False
    tf = ts_field(t)
    if tf is None:
        return False
    route = routes.route(refs, len(shards), prefixes)
    if route is None:
        return False
    get, order, bounds, ps = route
    if get is None:  # one shard
        s = shards[0]
        if s.seen and _meets(s.seen, refs, t):
            return False
        m = multi and t >= s.max_ts
        if t > s.max_ts:
            s.max_ts = t
        _fill(s, seg, off, refs, tss, vals, refs, range(n), ps, t, m)
        return True
    rs: Sequence[int] = get(refs)
    for k, lo, hi in bounds:
        s = shards[k]
        if s.seen and _meets(s.seen, rs[lo:hi], t):
            return False
    ms = [multi and t >= s.max_ts for s in shards]
    for s in shards:
        if t > s.max_ts:
            s.max_ts = t
    for k, lo, hi in bounds:
        _fill(shards[k], seg, off, refs, tss, vals, rs[lo:hi], order[lo:hi], ps[lo:hi], t, ms[k])
    return True


def _meets(seen: dict[int, int], rs: Sequence[int], t: int) -> bool:
    """Whether a series of ``rs`` is in the open batch at timestamp ``t`` (a copy the general loop drops)."""
    keys = seen.keys()
    if keys.isdisjoint(rs):
        return False
    return any(seen[r] == t for r in keys & set(rs))


def _fill(
    s: Shard,
    seg: int,
    off: int,
    refs: array,
    tss: array,
    vals: array,
    rs: Sequence[int],
    ix: Sequence[int],
    ps: list[bytes],
    t: int,
    multi: bool = False,
) -> None:
    """Append one shard's samples of a record (``ix`` their record indexes, ``ps`` their prefixes) to its batches.

    Cuts where the general loop cuts: before a series already in the open batch (with an
    older timestamp: same-timestamp copies never reach here), and at ``max_samples``.
    """
    n = len(ix)
    maxs = s.max_samples
    a = 0
    while a < n:
        b = min(n, a + max(1, maxs - s.count))
        whole = a == 0 and b == n
        seen = s.seen
        if seen:
            part = rs if whole else rs[a:b]
            if multi:
                if not seen.keys().isdisjoint(part):
                    s.repeats = True
            elif not seen.keys().isdisjoint(part):
                j = next(j for j, r in enumerate(part) if r in seen)
                if j == 0:
                    s.cut((seg, off, ix[a]))
                    s.max_ts = t
                    continue
                b = a + j
                whole = False
        m = b - a
        seen.update(zip(rs if whole else rs[a:b], repeat(t)))  # no interim dict: ~56 -> ~40 ns/sample
        s.parts.append((refs, tss, vals, ix, ps) if whole else (refs, tss, vals, ix[a:b], ps[a:b]))
        s.count += m
        if s.count >= maxs:
            s.cut((seg, off, ix[b - 1] + 1))
            s.max_ts = t
        a = b


def encode_part(out: bytearray, part: Part, prefixes: Prefixes) -> bool:
    """RW 1.0 body of one batch part, appended to ``out``, if it is one timestamp of known series.

    The batch is encoded when sent, not when dispatched (a waiting batch holds no encoded
    bytes): one ``bytes.join`` over the prefixes, the packed values and the shared
    timestamp field, interleaved by extended slice assignment. A part the fast path made
    carries its prefixes (its route's, in its order) and is one timestamp by construction;
    one from the general loop looks them up. False (nothing appended) sends the part
    through the general loop.
    """
    refs, tss, vals, ix, ps = part
    m = len(ix)
    if not m:
        return True
    t = tss[ix[0]]
    tf = ts_field(t)
    if tf is None:
        return False
    if isinstance(ix, range) and ix.step == 1:
        sl = slice(ix.start, ix.stop)
        vs: Sequence[float] = vals[sl]
        if ps is None:
            rs: Sequence[int] = refs[sl]
            ts_: Sequence[int] = tss[sl]
    elif m == 1:
        i = ix[0]
        vs = (vals[i],)
        if ps is None:
            rs, ts_ = (refs[i],), (t,)
    else:
        get = itemgetter(*ix)
        vs = get(vals)
        if ps is None:
            rs, ts_ = get(refs), get(tss)
    if ps is None:
        if ts_.count(t) != m:
            return False
        ps = prefixes.many(rs)  # type: ignore[assignment]
        if not all(ps):
            return False
    o: list[Any] = [None] * (3 * m)
    o[0::3] = ps
    o[1::3] = map(pack_double, vs)
    o[2::3] = repeat(tf, m)
    out += b"".join(o)
    return True
