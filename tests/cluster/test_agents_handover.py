"""An agent of three real ``shoal run`` processes stopped (SIGTERM) and started again hands
its share over and takes it back step by step (the ramp) with every target scraped exactly
once per interval: each share change applies at the instant it announced, for every agent,
so the slot before it is the old owner's and the slot at it the new owner's (counted at the
targets).
"""

from __future__ import annotations

import time

import pytest

from tests import procs
from tests.cluster.test_agents import (  # noqa: F401 - `cluster` is a fixture
    HOSTS,
    INTERVAL,
    Agents,
    cluster,
    rejected_writes,
    settle,
    taken_over,
    times,
)
from tests.targets import Target

pytestmark = pytest.mark.timeout(240)


def ramp_of(agents: Agents, watcher: int, name: str) -> tuple[float, float]:
    """(announced weight, unix time it applies from) of ``name`` in ``watcher``'s view."""
    for p in agents.peers(watcher):
        if p["name"] == name:
            g = p["progress"]
            return g.get("rampWeight", 1.0), g.get("rampAt", 0.0)
    return 0.0, 0.0


def gaps(ts: list[float]) -> list[float]:
    return [b - a for a, b in zip(ts, ts[1:], strict=False)]


def test_a_restarted_agent_ramps_back_with_every_slot_scraped_once(
    cluster: tuple[Agents, list[Target], procs.Proc],  # noqa: F811 - the fixture
) -> None:
    agents, targets, prom = cluster
    everyone, owned = settle(agents)
    victim = [t for t in targets if t.address in owned[2]]
    stopped = time.time()
    agents.procs[HOSTS[2]].stop()  # SIGTERM: its share handed over, then it leaves
    taken_over(agents, everyone - {"agent2"}, victim, watchers=[0, 1])
    time.sleep(2 * INTERVAL)

    restarted = time.time()
    agents.start(2)
    # The new instance first: the others may still list the one that left, at a whole share.
    procs.eventually(lambda: ramp_of(agents, 0, "agent2")[0] < 1.0, timeout=20, interval=0.1)
    weights: list[float] = []
    deadline = time.time() + 90
    while time.time() < deadline:
        w, at = ramp_of(agents, 0, "agent2")
        if not weights or weights[-1] != w:
            weights.append(w)
        if w == 1.0 and at <= time.time():
            break
        time.sleep(0.2)
    whole = time.time()
    time.sleep(3 * INTERVAL)
    end = time.time()
    # It came back in steps (1/8 of its share first), and now owns its targets again.
    assert weights[-1] == 1.0 and len(weights) >= 3 and weights == sorted(weights), weights
    assert agents.owned(2)
    print(f"weights {weights}; whole share {whole - restarted:.1f} s after the restart")
    worst = {t.address: max(gaps(times(t, stopped, end)), default=0.0) for t in targets}
    closest = {t.address: min(gaps(times(t, stopped, end)), default=9.0) for t in targets}
    print(f"worst gap {max(worst.values()):.2f} s, closest pair {min(closest.values()):.2f} s")
    # From the stop, through the restart (its join included) and every ramp step: once per
    # interval.
    for t in targets:
        ts = times(t, stopped, end)
        assert len(ts) >= (end - stopped) / INTERVAL - 1.5, (t.address, len(ts))
        assert all(0.5 * INTERVAL < g < 1.5 * INTERVAL for g in gaps(ts)), (t.address, ts)
    time.sleep(1.0)  # the last samples reach Prometheus (batch deadline 200 ms)
    assert rejected_writes(prom.url) == 0
