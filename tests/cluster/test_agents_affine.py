"""Node-affine ownership and target-set digests across three real ``shoal run`` agents.

Targets carry ``__meta_kubernetes_pod_node_name`` naming an agent (as a pod on that
agent's node would); a quarter have no node and go by the ring. Scrapes are counted
at the targets. Asserted: each agent scrapes its own node's targets, every target
once per interval; a SIGSTOPped agent's node targets fall back to the others within
two intervals and come back after SIGCONT with no duplicate scrape; an agent that
sees one target more is reported by its peers (API and metric) until it agrees again.
The printed figures are the ones in docs/clustering.md.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import procs
from tests.cluster.test_agents import (
    INTERVAL,
    SCRAPE,
    Agents,
    check_exactly_once,
    config,
    min_gap,
    running,
    settle,
    settled,
    taken_over,
    times,
)
from tests.targets import Target

pytestmark = pytest.mark.timeout(240)

HOSTS = ["127.0.12.2", "127.0.12.3", "127.0.12.4"]
PER_NODE, LOOSE = 6, 6
NOWHERE = "http://127.0.0.1:9"  # no backend: writes fail, harmless here


def mismatch(agents: Agents, i: int) -> float:
    text = httpx.get(agents.url(i) + "/metrics", timeout=3).text
    for line in text.splitlines():
        if line.startswith("shoal_cluster_target_set_mismatch{") and SCRAPE in line:
            return float(line.rsplit(" ", 1)[1])
    return -1.0


@pytest.fixture
def affine(tmp_path: Path) -> Iterator[tuple[Agents, list[Target], dict[str, str]]]:
    targets = [Target(f"affine_metric{{i=\"{i}\"}} {i}\n").start()
               for i in range(len(HOSTS) * PER_NODE + LOOSE)]
    nodes = {t.address: f"agent{n // PER_NODE}" for n, t in enumerate(targets[: len(HOSTS) * PER_NODE])}
    configs = {}
    for i in range(len(HOSTS)):
        configs[i] = tmp_path / f"agent{i}.alloy"
        configs[i].write_text(config(targets, NOWHERE, nodes))
    agents = Agents(tmp_path, configs[0], HOSTS, configs)
    with running(agents, targets):
        yield agents, targets, nodes


def test_node_affine_targets_stay_on_their_node_and_fall_back_when_it_stalls(
    affine: tuple[Agents, list[Target], dict[str, str]],
) -> None:
    agents, targets, nodes = affine
    everyone, owned = settle(agents)
    for i in range(len(HOSTS)):
        assert {a for a, n in nodes.items() if n == f"agent{i}"} <= owned[i]
    assert sum(len(o) for o in owned) == len(targets)
    print("shares:", [len(o) for o in owned], f"of {len(targets)} ({PER_NODE} node-affine each)")
    start = time.time()
    time.sleep(5 * INTERVAL)
    check_exactly_once(targets, start, time.time())
    assert [mismatch(agents, i) for i in range(len(HOSTS))] == [0, 0, 0]

    # agent1 stalls: its node's pods are scraped by the others, as are its ring targets.
    node1 = [t for t in targets if nodes.get(t.address) == "agent1"]
    victim = [t for t in targets if t.address in owned[1]]
    stopped = time.time()
    agents.signal(1, signal.SIGSTOP)
    detected = taken_over(agents, everyone - {"agent1"}, victim)
    first = max(times(t, stopped)[0] for t in node1)
    moved_elsewhere = (agents.owned(0) - owned[0]) | (agents.owned(2) - owned[2])
    assert moved_elsewhere == owned[1]  # only the stalled agent's targets moved
    assert owned[0] <= agents.owned(0) and owned[2] <= agents.owned(2)
    print(f"SIGSTOP: out after {detected - stopped:.1f} s; its {len(node1)} node targets "
          f"scraped elsewhere {first - stopped:.1f} s after the stop; {len(moved_elsewhere)} moved")

    resumed = time.time()
    agents.signal(1, signal.SIGCONT)
    procs.eventually(lambda: settled(agents, everyone), timeout=20, interval=0.1)
    procs.eventually(lambda: {t.address for t in node1} <= agents.owned(1), timeout=10)
    print(f"SIGCONT: node targets back on agent1 after {time.time() - resumed:.1f} s")
    time.sleep(3 * INTERVAL)
    for t in targets:
        assert min_gap(times(t, resumed - INTERVAL)) > 0.5 * INTERVAL, (t.address, times(t, resumed))


def test_an_agent_that_sees_other_targets_is_reported_until_it_agrees(
    affine: tuple[Agents, list[Target], dict[str, str]], tmp_path: Path,
) -> None:
    agents, targets, nodes = affine
    everyone = {f"agent{i}" for i in range(len(HOSTS))}
    procs.eventually(lambda: settled(agents, everyone), timeout=30)
    procs.eventually(lambda: [mismatch(agents, i) for i in range(3)] == [0, 0, 0], timeout=15)
    extra = Target("affine_extra 1\n").start()
    try:
        cfg = agents.configs[2]
        cfg.write_text(config([*targets, extra], NOWHERE, nodes))
        changed = time.time()
        assert httpx.post(agents.url(2) + "/-/reload", timeout=10).status_code == 200

        def reported() -> bool:
            seen = {p["name"]: p for p in agents.peers(0)}
            return seen["agent2"]["targetSetMismatch"] == [SCRAPE] and mismatch(agents, 0) == 1
        procs.eventually(reported, timeout=15, interval=0.2)
        print(f"mismatch reported {time.time() - changed:.1f} s after the reload")
        peers2 = {p["name"]: p for p in agents.peers(2)}
        assert peers2["agent0"]["targetSetMismatch"] == [SCRAPE] and mismatch(agents, 2) == 2
        assert peers2["agent2"]["targetSets"][SCRAPE]["targets"] == len(targets) + 1
        cfg.write_text(config(targets, NOWHERE, nodes))
        agreed = time.time()
        assert httpx.post(agents.url(2) + "/-/reload", timeout=10).status_code == 200
        procs.eventually(lambda: [mismatch(agents, i) for i in range(3)] == [0, 0, 0], timeout=15)
        print(f"agreement seen {time.time() - agreed:.1f} s after the second reload")
    finally:
        extra.stop()
