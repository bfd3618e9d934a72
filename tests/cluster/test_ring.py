"""Ownership: balance within 1.1x of the mean for 3 to 11 members, and minimal movement."""

from __future__ import annotations

from collections import Counter

import pytest

from agent.cluster.ring import Ring

KEYS = [
    f"job-{i % 13}/http/10.{i // 65536}.{i // 256 % 256}.{i % 256}:9100/metrics"
    for i in range(10_000)
]


def shares(ring: Ring) -> Counter[str]:
    return Counter(ring.owner(k) for k in KEYS)


@pytest.mark.parametrize("size", range(3, 12))
def test_busiest_member_at_most_1_1_of_the_mean(size: int) -> None:
    for seed in (b"", b"cluster-seed"):
        counts = shares(Ring([f"shoal-{i}.shoal.monitoring.svc" for i in range(size)], seed))
        assert len(counts) == size
        assert max(counts.values()) / (len(KEYS) / size) <= 1.1


@pytest.mark.parametrize("size", [3, 5, 11])
def test_only_a_leaving_members_keys_move(size: int) -> None:
    names = [f"node-{i}" for i in range(size)]
    before = {k: Ring(names).owner(k) for k in KEYS}
    after_ring = Ring(names[:1] + names[2:])  # node-1 leaves
    moved = [k for k in KEYS if after_ring.owner(k) != before[k]]
    assert moved and all(before[k] == "node-1" for k in moved)
    assert len(moved) == sum(1 for o in before.values() if o == "node-1")


def test_a_joining_member_takes_keys_only_for_itself() -> None:
    names = [f"node-{i}" for i in range(5)]
    before, after = Ring(names), Ring([*names, "node-new"])
    moved = [k for k in KEYS if after.owner(k) != before.owner(k)]
    assert moved and all(after.owner(k) == "node-new" for k in moved)
    assert 0.5 < len(moved) / (len(KEYS) / 6) < 1.5


def test_seed_changes_the_assignment_and_order_does_not() -> None:
    a, b = Ring(["x", "y", "z"]), Ring(["z", "x", "y"])
    assert [a.owner(k) for k in KEYS[:200]] == [b.owner(k) for k in KEYS[:200]]
    seeded = Ring(["x", "y", "z"], b"s")
    assert sum(a.owner(k) != seeded.owner(k) for k in KEYS[:300]) > 100
    assert a.ranked(KEYS[0])[0] == a.owner(KEYS[0]) and len(a.ranked(KEYS[0])) == 3


def test_no_members_no_owner() -> None:
    assert Ring([]).owner("anything") is None
