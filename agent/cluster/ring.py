"""Who owns a key: rendezvous (highest random weight) hashing over the participating members.

Each member scores every key with a hash of (key, member) and the highest score
owns it. Against a ring of virtual nodes this needs no tuning for balance (the
issue measured 1.01 to 1.05 of the mean for 3 to 11 members over 10,000 keys,
against 1.09 to 1.29 for 120-160 vnodes) and only the keys of a member that
leaves move, to the member that scored second, with no table to rebuild. The cost
is one cheap integer mix per member per lookup (measured in docs/clustering.md).
The key's hash is blake2b (seeded with the cluster-wide seed); the per-member mix
is splitmix64's finaliser, so a lookup does one blake2b call, not one per member.

Weights make a returning member take its share gradually: a member of weight w
keeps a key it scores highest on only when a second per-(key, member) draw falls
under w; otherwise the key goes down the ranking as if the member were absent.
As w grows the set of keys it keeps only grows, so a ramp moves keys only from
the others to it, never between the others; a key no member accepts (everyone
ramping) goes to its top-ranked member with a weight above 0 (one at 0 is
leaving, or not yet taking its first share), or with everyone at 0 (a cold start)
to its top-ranked member, so no key is ever owned by nobody. Every agent builds
the ring from the same gossiped weights.

A weight that grows is scheduled: it applies from an announced wall-clock instant, the
same for every agent (the member included), so a ``Plan`` holds the ring in force now and
the rings that take over at each announced instant, and ownership is asked for a scrape
slot's time: the old owner scrapes every slot before the instant, the new one every slot
from it, and no slot falls between them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence

_M64 = (1 << 64) - 1
_DRAW = 0x9E3779B97F4A7C15  # separates the weight draw from the rendezvous score


def _hash(data: bytes, seed: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, key=seed[:64]).digest(), "little")


def _mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


class Ring:
    """An immutable ownership function over a set of member names."""

    def __init__(
        self, names: Iterable[str], seed: bytes = b"", weights: Mapping[str, float] | None = None
    ) -> None:
        self.seed = seed
        self.names = tuple(sorted(set(names)))
        self._weights = [(_hash(n.encode(), seed), n) for n in self.names]
        # Members ramping up (weight under 1): name -> (weight as a 64-bit threshold, its hash).
        self.partial: dict[str, float] = {
            n: min(1.0, max(0.0, w)) for n, w in (weights or {}).items()
            if n in self.names and w < 1.0
        }
        self._partial = {
            n: (int(w * _M64), h) for h, n in self._weights
            if (w := self.partial.get(n)) is not None
        }

    def __len__(self) -> int:
        return len(self.names)

    def same_as(self, other: Ring) -> bool:
        """Whether both rings give every key the same owner (same members, weights, seed)."""
        return (self.names, self.partial, self.seed) == (other.names, other.partial, other.seed)

    @property
    def whole(self) -> frozenset[str]:
        """Members at their whole share (node-affine targets go only to these)."""
        return frozenset(n for n in self.names if n not in self.partial)

    def key_hash(self, key: str | bytes) -> int:
        return _hash(key.encode() if isinstance(key, str) else key, self.seed)

    def owner(self, key: str | bytes) -> str | None:
        """The owning member's name, or None when no member participates."""
        if not self._weights:
            return None
        h = self.key_hash(key)
        if self._partial:
            return self._weighted_owner(h)
        best, owner = -1, ""
        for w, name in self._weights:
            score = _mix(h ^ w)
            if score > best:
                best, owner = score, name
        return owner

    def _weighted_owner(self, h: int) -> str:
        ranked = sorted(((_mix(h ^ w), n) for w, n in self._weights), reverse=True)
        fallback = ""
        for _, name in ranked:
            partial = self._partial.get(name)
            if partial is None:
                return name
            threshold, mh = partial
            # An independent draw per (key, member): rotate the member's hash so it is not the
            # score's own mix.
            if _mix(h ^ ((mh << 17 | mh >> 47) & _M64) ^ _DRAW) < threshold:
                return name
            if threshold and not fallback:
                fallback = name
        # Nobody accepted (everyone ramping): the top-ranked member with any share, never one at
        # weight 0 (leaving, or not yet taking its first share: it scrapes nothing); all at 0 (a
        # cold start): the top-ranked.
        return fallback or ranked[0][1]

    def ranked(self, key: str | bytes) -> list[str]:
        """Every member, best first: the order in which they would take the key over."""
        h = self.key_hash(key)
        return [n for _, n in sorted(((_mix(h ^ w), n) for w, n in self._weights), reverse=True)]


class Plan:
    """The ring in force now and the rings scheduled to replace it at announced unix times.

    ``at`` is a scrape slot's scheduled wall time: every agent computes the same slot times
    (the phase comes from the target and the cluster seed) and hears the same switch times,
    so all of them give a slot the same owner, whichever side of a switch it falls.
    """

    def __init__(self, current: Ring, scheduled: Sequence[tuple[float, Ring]] = ()) -> None:
        self.current = current
        self.scheduled = tuple(sorted(scheduled, key=lambda e: e[0]))

    def ring(self, at: float | None = None) -> Ring:
        """The ring in force at unix time ``at`` (None: now, as built)."""
        ring = self.current
        if at is None:
            return ring
        for when, later in self.scheduled:
            if at < when:
                break
            ring = later
        return ring

    def switches(self) -> tuple[float, ...]:
        """The pending switch times, earliest first."""
        return tuple(when for when, _ in self.scheduled)

    def owner(self, key: str | bytes, at: float | None = None) -> str | None:
        return self.ring(at).owner(key)

    def same_as(self, other: Plan) -> bool:
        """Whether both plans give every key and time the same owner."""
        return (self.current.same_as(other.current) and self.switches() == other.switches()
                and all(a.same_as(b) for (_, a), (_, b) in zip(self.scheduled, other.scheduled,
                                                               strict=True)))


def plan(
    names: Iterable[str], seed: bytes, weight_at: Mapping[str, Callable[[float], float]],
    switches: Iterable[float], now: float,
) -> Plan:
    """The plan over ``names`` whose weights at a time are ``weight_at[name](t)`` (members not
    in it at a whole share), changing only at ``switches``; those not after ``now`` are past."""
    names = tuple(names)

    def ring(t: float) -> Ring:
        return Ring(names, seed, {n: f(t) for n, f in weight_at.items()})

    current = ring(now)
    scheduled: list[tuple[float, Ring]] = []
    last = current
    for t in sorted({t for t in switches if t > now}):
        nxt = ring(t)
        if not nxt.same_as(last):
            scheduled.append((t, nxt))
            last = nxt
    return Plan(current, scheduled)
