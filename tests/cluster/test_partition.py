"""A partition made with the network: three real agents in network namespaces, one cut off.

The agents run in their own namespaces (``tests/cluster/netns.py``) joined by a
bridge where the targets and a real Prometheus listen. Taking one agent's link
down cuts it off from its peers, its targets and the backend. Asserted: the two
that still see each other take its targets within two intervals; the cut-off one,
in its own view, is alone and owns every target (it keeps trying to scrape them:
duplicates over gaps); after healing, every agent's view converges within
seconds, each target is again scraped exactly once per interval, and Prometheus
rejects nothing, including what the cut-off agent queued while it could not send.
Needs root (namespaces, links); CI runs as root.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import procs
from tests.cluster.netns import Net, network
from tests.cluster.test_agents import (
    INTERVAL,
    SCRAPE,
    TUNING,
    check_exactly_once,
    config,
    plain,
    rejected_writes,
    times,
)
from tests.targets import Target

pytestmark = pytest.mark.timeout(240)

AGENTS = 3
TARGETS = 12
PORT = 12345  # every namespace has its own ports
PARTITION = 15.0  # seconds agent 2's link is down
NET_INDEX = 1  # 10.213.1.0/24 (loadtest/cluster.py uses another)
# No rejoin through the join addresses during the test, and no gossip to the dead after 2 s:
# healing must come from push-pulling with members held dead (swim.py ``_reconnect``).
PARTITION_TUNING = f"{TUNING},rejoin_interval=600,gossip_to_the_dead=2"


class NsAgents:
    def __init__(self, net: Net, tmp: Path, cfg: Path, n: int = AGENTS) -> None:
        self.net, self.tmp, self.cfg, self.n = net, tmp, cfg, n
        self.procs: list[procs.Proc] = []

    def url(self, i: int) -> str:
        return f"http://{self.net.addr(i)}:{PORT}"

    def start(self, i: int) -> None:
        join = ",".join(f"{self.net.addr(j)}:{PORT}" for j in range(self.n))
        p = self.net.agent(
            i, self.tmp / f"agent{i}", self.cfg,
            f"--server.http.listen-addr={self.net.addr(i)}:{PORT}",
            "--cluster.enabled", f"--cluster.node-name=agent{i}",
            f"--cluster.join-addresses={join}", "--cluster.name=test",
            f"--cluster.tuning={PARTITION_TUNING}", "--config.watch-interval=0",
        )
        p.url = self.url(i)
        self.procs.append(p)
        procs.wait_http(p.url + "/-/ready", proc=p.popen)

    def get(self, i: int, path: str, inside: bool = False) -> object:
        """JSON from agent ``i``'s API; ``inside``: from its namespace (works while cut off)."""
        if inside:
            return json.loads(self.net.get(i, self.url(i) + path))
        return httpx.get(self.url(i) + path, timeout=3).json()

    def participants(self, i: int, inside: bool = False) -> set[str]:
        """Who owns its whole share in agent i's view (a joining agent ramps up first: at an
        eighth of its share it may own none of the 12 targets)."""
        peers = self.get(i, "/api/v0/web/peers", inside)
        now = time.time()  # the namespaces share the host's clock
        return {p["name"] for p in peers  # type: ignore[union-attr]
                if p["ownsTargets"] and not p["heldBack"]
                and p["progress"].get("rampWeight", 1.0) == 1.0
                and p["progress"].get("rampAt", 0.0) <= now}

    def owned(self, i: int, inside: bool = False) -> set[str]:
        info = self.get(i, f"/api/v0/web/components/{SCRAPE}", inside)
        body = {a["name"]: plain(a["value"]) for a in info["debugInfo"]}  # type: ignore[index]
        return {t["labels"]["__address__"] for t in body["targets"]}  # type: ignore[index,union-attr]

    def settled(self, names: set[str], watchers: list[int], inside: bool = False) -> bool:
        return all(self.participants(i, inside) == names for i in watchers)


@contextlib.contextmanager
def ns_cluster(
    tmp: Path, index: int, n: int, count: int, metric: str,
) -> Iterator[tuple[Net, NsAgents, list[Target], procs.Proc]]:
    """``n`` agents in namespaces on 10.213.<index>.0/24 scraping ``count`` targets of
    ``metric`` into a real Prometheus; everything (links, rules, namespaces) removed after."""
    with network(index, n) as net:
        targets: list[Target] = []
        try:
            targets = [
                Target(f'{metric}{{i="{i}"}} {i}\n', host=net.host).start() for i in range(count)
            ]
            with procs.prometheus(tmp / "prom", host=net.host) as prom:
                cfg = tmp / "shoal.alloy"
                cfg.write_text(config(targets, prom.url))
                agents = NsAgents(net, tmp, cfg, n)
                try:
                    for i in range(n):
                        agents.start(i)
                    yield net, agents, targets, prom
                finally:
                    procs.stop_all(agents.procs)
        finally:
            for t in targets:
                t.stop()


@pytest.fixture
def partitioned(tmp_path: Path) -> Iterator[tuple[Net, NsAgents, list[Target], procs.Proc]]:
    with ns_cluster(tmp_path, NET_INDEX, AGENTS, TARGETS, "partition_metric") as cluster:
        yield cluster


def test_partition_by_link_down_and_heal(
    partitioned: tuple[Net, NsAgents, list[Target], procs.Proc],
) -> None:
    net, agents, targets, prom = partitioned
    everyone = {f"agent{i}" for i in range(AGENTS)}
    procs.eventually(lambda: agents.settled(everyone, list(range(AGENTS))), timeout=30)
    time.sleep(2 * INTERVAL)
    # `settled` once counted an agent still ramping up (fixed in `participants`); a transient
    # drain on a busy machine can also leave it owning nothing for a few seconds.
    procs.eventually(lambda: bool(agents.owned(2)), timeout=15)
    victim = [t for t in targets if t.address in agents.owned(2)]
    assert victim, "agent2 owns nothing before the partition"

    # Link down: agents 0 and 1 take agent 2's targets; agent 2, alone in its view, owns all.
    cut = time.time()
    net.partition(2)
    procs.eventually(lambda: agents.settled({"agent0", "agent1"}, [0, 1]), timeout=20, interval=0.1)
    majority = time.time()
    procs.eventually(lambda: agents.settled({"agent2"}, [2], inside=True), timeout=20, interval=0.2)
    assert agents.owned(2, inside=True) == {t.address for t in targets}
    time.sleep(2 * INTERVAL + 0.5)
    for t in victim:
        after = times(t, majority)
        assert after and after[0] - majority <= 2 * INTERVAL + 0.5, (t.address, after[:2])
    print(f"partition: agent2 out of the majority's rings after {majority - cut:.1f} s")
    time.sleep(max(0.0, PARTITION - (time.time() - cut)))

    # Heal: every view converges, each target is scraped once per interval again.
    healed = time.time()
    net.heal(2)
    procs.eventually(lambda: agents.settled(everyone, list(range(AGENTS))), timeout=15, interval=0.1)
    procs.eventually(lambda: agents.owned(2), timeout=10)
    converged = time.time()
    print(f"heal: views converged and agent2 scraping its share {converged - healed:.1f} s after")
    time.sleep(2 * INTERVAL)
    start = time.time()
    time.sleep(4 * INTERVAL)
    check_exactly_once(targets, start, time.time())
    time.sleep(1.0)  # the last samples reach Prometheus
    assert rejected_writes(prom.url) == 0
    assert len(procs.query(prom.url, 'partition_metric{job="cluster"}')) == TARGETS
