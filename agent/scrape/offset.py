"""Where inside its interval a target is scraped.

As in Prometheus, each target gets a fixed phase derived from a hash of its
labels and URL, mixed with a per-agent seed: load spreads evenly over the
interval, a target keeps its phase across restarts on the same host, and two
agents scraping the same target (a failover) do not hit it at the same instant.
"""

from __future__ import annotations

import hashlib
import socket
import time

from agent.labels import Labels

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK = (1 << 64) - 1


def fnv1a64(data: bytes) -> int:
    h = _FNV_OFFSET
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & _MASK
    return h


def target_hash(labels: Labels, url: str) -> int:
    """Stable across processes (unlike ``hash()``): labels digest + URL, FNV-1a 64."""
    digest = hashlib.sha256("\xff".join(f"{n}\xfe{v}" for n, v in labels).encode()).digest()
    return fnv1a64(digest[:8].hex().encode() + url.encode())


def agent_seed(extra: str = "") -> int:
    """Per-agent seed: the host name (plus anything that distinguishes agents on one host)."""
    return fnv1a64((socket.gethostname() + extra).encode())


def offset(interval: float, thash: int, seed: int, now: float | None = None) -> float:
    """Seconds from ``now`` to the target's first scrape (in (0, interval]).

    The phase is pinned to absolute time: ``now`` plus the result is congruent
    to ``(thash ^ seed) % interval`` modulo the interval, whenever it is called.
    """
    iv = int(interval * 1e9)
    n = time.time_ns() if now is None else int(now * 1e9)
    base = iv - n % iv
    off = (thash ^ seed) % iv
    nxt = base + off
    if nxt > iv:
        nxt -= iv
    return nxt / 1e9


def slot_time(interval: float, thash: int, seed: int, t: float) -> float:
    """The scheduled wall time of the target's slot nearest ``t`` (unix seconds).

    Every agent with the same seed computes the same slot times for a target, to the
    nanosecond, whatever its own timer jitter: the cluster asks who owns a slot by this time.
    """
    iv = int(interval * 1e9)
    off = (thash ^ seed) % iv
    n = int(t * 1e9)
    k = round((n - off) / iv)
    return (k * iv + off) / 1e9
