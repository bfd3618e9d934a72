"""A split made with the network: five real agents cut into two groups (2 | 3) that still reach
every target and the backend, then healed.

Unlike a single agent cut off (``test_partition.py``), both sides here can scrape:
each side, in its own view, owns every target, so every target is scraped by
both sides while the split lasts (duplicates over gaps) and never goes unscraped.
The split drops packets between the groups with iptables in each namespace
(``Net.split``). Healing must come from the engine's reconnect rule (push-pull
with members held dead, or with join addresses while fewer members are seen
than there are join addresses): the rejoin interval is set far beyond the test.
Asserted: each side settles on itself; while split, each target is scraped from
both sides (the targets see the scrapers' namespace addresses); no target goes
unscraped longer than its side takes to settle plus its next slots; after healing every view
agrees within seconds, each target is scraped exactly once per interval again,
and Prometheus rejects nothing. Needs root (namespaces, iptables); CI runs as root.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests import procs
from tests.cluster.netns import Net
from tests.cluster.test_agents import INTERVAL, check_exactly_once, rejected_writes
from tests.cluster.test_partition import NsAgents, ns_cluster
from tests.targets import Target

pytestmark = pytest.mark.timeout(300)

AGENTS = 5
GROUPS = [[0, 1], [2, 3, 4]]
TARGETS = 15
SPLIT = 15.0  # seconds the two groups cannot reach each other
NET_INDEX = 3  # 10.213.3.0/24 (test_partition uses 1, loadtest/cluster.py 2)


def worst_gap(targets: list[Target], start: float, end: float) -> tuple[float, str, float]:
    """The longest time any target went unscraped in [start, end): (seconds, target, from)."""
    worst = (0.0, "", start)
    for t in targets:
        ts = [start, *sorted(r.time for r in list(t.requests) if start <= r.time < end), end]
        for a, b in zip(ts, ts[1:], strict=False):
            if b - a > worst[0]:
                worst = (b - a, t.address, a)
    return worst


def scraped_from(t: Target, start: float, end: float) -> set[str]:
    return {r.client for r in list(t.requests) if start <= r.time < end}


def test_split_two_three_scrapes_everything_and_heals(tmp_path: Path) -> None:
    with ns_cluster(tmp_path, NET_INDEX, AGENTS, TARGETS, "split_metric") as cluster:
        split_and_heal(*cluster)


def split_and_heal(net: Net, agents: NsAgents, targets: list[Target], prom: procs.Proc) -> None:
    everyone = {f"agent{i}" for i in range(AGENTS)}
    procs.eventually(lambda: agents.settled(everyone, list(range(AGENTS))), timeout=40)
    time.sleep(2 * INTERVAL)

    cut = time.time()
    net.split(GROUPS)
    for group in GROUPS:
        names = {f"agent{i}" for i in group}
        procs.eventually(lambda g=group, n=names: agents.settled(n, g), timeout=30, interval=0.1)
    split_views = time.time() - cut
    everything = {t.address for t in targets}
    for group in GROUPS:  # each side's scrape pools, following its view, share every target

        def side_owns_all(g: list[int] = group) -> bool:
            return set().union(*(agents.owned(i) for i in g)) == everything

        procs.eventually(side_owns_all, timeout=10, interval=0.2)
    settled = time.time()
    time.sleep(max(3 * INTERVAL, SPLIT - (settled - cut)))
    sides = [{net.addr(i) for i in group} for group in GROUPS]
    for t in targets:  # each side scraped every target once both had settled
        seen = scraped_from(t, settled + INTERVAL, time.time())
        assert all(seen & side for side in sides), (t.address, seen)
    print(f"split: each side alone in its views after {split_views:.1f} s")

    healed = time.time()
    net.unsplit()
    procs.eventually(lambda: agents.settled(everyone, list(range(AGENTS))), timeout=20, interval=0.1)
    agree = time.time() - healed
    print(f"heal: every view agrees {agree:.1f} s after the split ended")
    time.sleep(2 * INTERVAL)
    start = time.time()
    time.sleep(4 * INTERVAL)
    check_exactly_once(targets, start, time.time())
    # No target is lost. At the cut, the other side's targets wait for this side to see itself
    # alone (the failure detector: split_views) and then for their next slot; at the heal, for
    # the views to agree and the next slot. A target a side lost would stay unscraped to the end.
    # (Bounds are the measured settle times plus slots, so a busy machine moves them together.)
    cut_gap = worst_gap(targets, cut - INTERVAL, healed)
    assert cut_gap[0] <= split_views + 3 * INTERVAL, (
        f"during the split {cut_gap[1]} went unscraped for {cut_gap[0]:.1f} s from "
        f"{cut_gap[2] - cut:+.1f} s after the cut (sides settled after {split_views:.1f} s)")
    heal_gap = worst_gap(targets, healed - INTERVAL, time.time())
    assert heal_gap[0] <= agree + 3 * INTERVAL, (
        f"after the heal {heal_gap[1]} went unscraped for {heal_gap[0]:.1f} s from "
        f"{heal_gap[2] - healed:+.1f} s after it (views agreed after {agree:.1f} s)")
    print(f"worst gaps: {cut_gap[0]:.1f} s around the cut, {heal_gap[0]:.1f} s around the heal")
    time.sleep(1.0)  # the last samples reach Prometheus
    assert rejected_writes(prom.url) == 0
    assert len(procs.query(prom.url, 'split_metric{job="cluster"}')) == TARGETS
