"""Issue 13's cluster figures: real ``shoal run`` agents sharing real targets at a 15 s interval.

Scenarios, each measured at the targets (every request is logged with its arrival
time, so a missed or duplicated scrape is seen, not inferred): steady share,
SIGSTOP for 60 s and SIGCONT, SIGKILL and restart, a rolling restart, CPU
starvation through a cgroup CPU quota, a real disk stall (the victim's WAL on a
loop-mounted ext4 image frozen with ``fsfreeze``), a partition made by taking
the victim's link down (``--netns``: every agent in its own network namespace,
see tests/cluster/netns.py), a split of the agents into two groups that still
reach the targets (``--netns``, iptables), node-affine targets (``affine``: the
share their own node's agent scrapes, their fall-back and return), random loss
between agents (``lossy``, iptables' statistic match: false suspicions and
ownership changes while nobody is down), the same through a user-space relay
that delays (``relayed``, loadtest/relay.py), and the gossip ack latency each agent measured
(``shoal_cluster_probe_ack_seconds``). While a fault lasts, agent0's view of the
victim is polled every 0.5 s, so role and ownership changes are counted (a
flapping agent shows as more than one demotion and one return). The failure
detector keeps its defaults. A real Prometheus receives the samples and its
rejected-sample counters are read at the end. Figures go to docs/clustering.md.
Partitions, freezing and cgroups need root.

    python loadtest/cluster.py --agents 3 --scenarios steady,stop,kill,freeze
    python loadtest/cluster.py --agents 3 --netns --scenarios steady,partition
    python loadtest/cluster.py --agents 5 --netns --scenarios steady,split [--pause 100]
    python loadtest/cluster.py --agents 3 --netns --scenarios affine
    python loadtest/cluster.py --agents 3 --netns --scenarios lossy --loss 0.2 --pause 180
    python loadtest/cluster.py --agents 3 --scenarios relayed --relay-delay 100 --pause 180
    python loadtest/cluster.py --agents 3 --interval 1 --targets 150 --series 200 \
        --scenarios starve --quota 0.03
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtest.relay import Relay  # noqa: E402 - after the path fix above
from tests import procs  # noqa: E402
from tests.cluster.disk import Disk, loop_disk  # noqa: E402
from tests.cluster.netns import Net, network  # noqa: E402
from tests.cluster.test_agents import config, free_port, plain, rejected_writes  # noqa: E402
from tests.targets import Target  # noqa: E402

CGROUP = Path("/sys/fs/cgroup/cpu")  # cgroup v1 here; v2 would be cpu.max
NET_INDEX = 2  # 10.213.2.0/24; tests/cluster/test_partition.py uses 1
NS_PORT = 12345  # every namespace has its own ports


class Cluster:
    def __init__(
        self, n: int, tmp: Path, cfg: Path, interval: float,
        net: Net | None = None, disk: Disk | None = None, relay: Relay | None = None,
    ) -> None:
        self.n, self.tmp, self.cfg, self.interval, self.net = n, tmp, cfg, interval, net
        self.relay = relay  # when set, agents advertise 127.0.7.x, relayed to their 127.0.8.x
        self.disk = disk  # the victim's (agent n-1's) WAL lives here when set
        if net is not None:
            self.hosts = [net.addr(i) for i in range(n)]
            self.ports = [NS_PORT] * n
        else:
            self.hosts = [f"127.0.8.{i + 2}" for i in range(n)]
            self.ports = [free_port(h) for h in self.hosts]
        self.procs: list[procs.Proc | None] = [None] * n
        self.fronts = list(self.hosts)  # what the agents advertise and join through
        if relay is not None:
            self.fronts = [f"127.0.7.{i + 2}" for i in range(n)]
            for i in range(n):
                relay.add((self.fronts[i], self.ports[i]), (self.hosts[i], self.ports[i]))

    def url(self, i: int) -> str:
        return f"http://{self.hosts[i]}:{self.ports[i]}"

    def start(self, i: int) -> None:
        join = ",".join(f"{h}:{p}" for h, p in zip(self.fronts, self.ports, strict=True))
        workdir = self.tmp / f"agent{i}"
        workdir.mkdir(exist_ok=True)
        flags = [
            f"--server.http.listen-addr={self.hosts[i]}:{self.ports[i]}",
            "--cluster.enabled", f"--cluster.node-name=agent{i}", f"--cluster.join-addresses={join}",
            "--cluster.name=load", "--config.watch-interval=0",
            f"--cluster.advertise-address={self.fronts[i]}",
        ]
        if self.disk is not None and i == self.n - 1:
            flags.append(f"--storage.path={self.disk.mount / 'data'}")  # the last one given wins
        if self.net is not None:
            p = self.net.agent(i, workdir, self.cfg, *flags)
        else:
            p = procs.agent(workdir, self.cfg, *flags)
        p.url = self.url(i)
        self.procs[i] = p
        procs.wait_http(p.url + "/-/ready", proc=p.popen)

    def peers(self, i: int, inside: bool = False) -> list[dict]:
        """Agent i's /api/v0/web/peers; ``inside``: read from its namespace (while cut off)."""
        if inside and self.net is not None:
            return json.loads(self.net.get(i, self.url(i) + "/api/v0/web/peers"))
        return httpx.get(self.url(i) + "/api/v0/web/peers", timeout=3).json()

    def proc(self, i: int) -> procs.Proc:
        p = self.procs[i]
        assert p is not None
        return p

    def owners(self, i: int, inside: bool = False) -> set[str]:
        return {p["name"] for p in self.peers(i, inside) if p["ownsTargets"] and not p["heldBack"]}

    def owned(self, i: int) -> set[str]:
        info = httpx.get(self.url(i) + "/api/v0/web/components/prometheus.scrape.t", timeout=3).json()
        body = {a["name"]: plain(a["value"]) for a in info["debugInfo"]}
        return {t["labels"]["__address__"] for t in body["targets"]}  # type: ignore[index,union-attr]

    def wait_owners(self, names: set[str], watchers: list[int], timeout: float = 120.0) -> float:
        start = time.time()
        procs.eventually(lambda: all(self.owners(i) == names for i in watchers), timeout=timeout, interval=0.2)
        return time.time() - start

    def wait_full(self, timeout: float = 120.0) -> None:
        """Until agent0 sees every member at its whole share (joining agents ramp up)."""
        procs.eventually(lambda: all(p["progress"].get("rampWeight", 1.0) >= 1.0
                                     for p in self.peers(0)), timeout=timeout, interval=0.5)

    def names(self, skip: int | None = None) -> set[str]:
        return {f"agent{i}" for i in range(self.n) if i != skip}

    def ack_latency(self) -> list[str]:
        out = []
        for i in range(self.n):
            with contextlib.suppress(httpx.HTTPError):
                text = httpx.get(self.url(i) + "/metrics", timeout=3).text
                buckets = [
                    (float(line.split('le="')[1].split('"')[0]), float(line.split()[-1]))
                    for line in text.splitlines()
                    if line.startswith("shoal_cluster_probe_ack_seconds_bucket")
                    and "+Inf" not in line
                ]
                total = max((c for _, c in buckets), default=0)
                if total:
                    p50 = next(le for le, c in buckets if c >= total * 0.5)
                    p99 = next(le for le, c in buckets if c >= total * 0.99)
                    out.append(f"agent{i}: n={total:.0f} p50<={p50} p99<={p99}")
        return out


class Watch:
    """Agent0's view of the victim every 0.5 s while a fault lasts: owns targets, role, liveness.

    Counting changes of the victim's ownership and role tells a clean demotion and return
    (one change each way) from flapping.
    """

    def __init__(self, c: Cluster, victim: int) -> None:
        self.c, self.name = c, f"agent{victim}"
        self.start = time.time()
        self.seen: list[tuple[float, bool, str, str, float]] = []
        self.figures: list[str] = []  # the on-time share it gossiped, at each change seen
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(0.5):
            with contextlib.suppress(httpx.HTTPError, ValueError):
                me = next((p for p in self.c.peers(0) if p["name"] == self.name), None)
                # Forgotten (reaped after being dead for a while) counts as owning nothing.
                state = ((me["ownsTargets"], me["role"], me["liveness"],
                          round(me["progress"].get("rampWeight", 1.0), 3))
                         if me else (False, "-", "gone", 0.0))
                if not self.seen or self.seen[-1][1:] != state:
                    self.seen.append((time.time(), *state))
                    p = me["progress"] if me else {"scrapesOnTime": 0, "scrapesDue": 0}
                    self.figures.append(f"{p['scrapesOnTime']}/{p['scrapesDue']}")

    def timeline(self) -> str:
        """Every change seen: seconds since the watch began, in or out of agent0's ring, role,
        the ramp weight and the on-time share it gossiped."""
        return "timeline (s, owns, role, weight, on time/due): " + " ".join(
            f"[{t - self.start:.1f} {'in' if o else 'out'} {r} {w} {f}]"
            for (t, o, r, _, w), f in zip(self.seen, self.figures, strict=True))

    def stop(self) -> str:
        self.done.set()
        self.thread.join()
        owns = [s[1] for s in self.seen]
        changes = sum(1 for a, b in zip(owns, owns[1:], strict=False) if a != b)
        roles = sorted({s[2] for s in self.seen})
        lives = sorted({s[3] for s in self.seen})
        return (f"agent0's view of {self.name}: {changes} ownership changes, "
                f"roles seen {roles}, liveness seen {lives}")


def scrape_stats(targets: list[Target], start: float, end: float, interval: float) -> dict[str, float]:
    """Per-target gaps and duplicates in [start, end): the worst gap, how many close pairs, and
    how many of a target's slots went unscraped (``missed``: its phase read from its scrapes,
    every slot a second or more inside the window with no scrape within half an interval;
    exact, where ``expected`` depends on where the window's edges fall)."""
    worst, dups, total, missed = 0.0, 0, 0, 0
    missed_at: list[float] = []  # seconds into the window, to find them in the agents' logs
    for t in targets:
        ts = sorted(r.time for r in list(t.requests) if start <= r.time < end)
        total += len(ts)
        edges = [start, *ts, end]
        worst = max(worst, max(b - a for a, b in zip(edges, edges[1:], strict=False)))
        dups += sum(1 for a, b in zip(ts, ts[1:], strict=False) if b - a < 0.5 * interval)
        if ts:
            slot = ts[0] - interval * math.floor((ts[0] - start - 1.0) / interval)
            while slot < end - 1.0:
                if not any(abs(x - slot) < 0.5 * interval for x in ts):
                    missed += 1
                    missed_at.append(round(slot - start, 1))
                slot += interval
    expected = len(targets) * (end - start) / interval
    return {"scrapes": total, "expected": round(expected, 1), "worst_gap_s": round(worst, 1),
            "duplicates": dups, "missed": missed, "missed_at_s": sorted(missed_at)[:10],
            "window_start": round(start, 1)}


def scenario_steady(c: Cluster, targets: list[Target], log: list[str]) -> None:
    time.sleep(2 * c.interval)
    start = time.time()
    time.sleep(4 * c.interval)
    shares = [len(c.owned(i)) for i in range(c.n)]
    log.append(f"steady: shares {shares} of {len(targets)}; "
               f"{scrape_stats(targets, start, time.time(), c.interval)}")


def scenario_stop(c: Cluster, targets: list[Target], log: list[str], pause: float = 60.0) -> None:
    victim = c.n - 1
    start = time.time()
    os.killpg(c.proc(victim).popen.pid, signal.SIGSTOP)
    dead = c.wait_owners(c.names(victim), [i for i in range(c.n) if i != victim])
    time.sleep(max(0.0, pause - (time.time() - start)))
    resumed = time.time()
    os.killpg(c.proc(victim).popen.pid, signal.SIGCONT)
    back = c.wait_owners(c.names(), list(range(c.n)))
    time.sleep(2 * c.interval)
    log.append(f"SIGSTOP {pause:.0f}s: out of the others' rings after {dead:.1f}s; after SIGCONT "
               f"share back in {back:.1f}s; {scrape_stats(targets, start, time.time(), c.interval)}; "
               f"after resume {scrape_stats(targets, resumed, time.time(), c.interval)}")


def scenario_kill(c: Cluster, targets: list[Target], log: list[str]) -> None:
    victim = c.n - 1
    start = time.time()
    c.proc(victim).stop(signal.SIGKILL)
    dead = c.wait_owners(c.names(victim), [i for i in range(c.n) if i != victim])
    time.sleep(c.interval)
    restarted = time.time()
    c.start(victim)
    c.wait_owners(c.names(), list(range(c.n)))
    back = time.time() - restarted
    time.sleep(2 * c.interval)
    log.append(f"SIGKILL: out of the others' rings after {dead:.1f}s; restart to share back "
               f"{back:.1f}s; "
               f"{scrape_stats(targets, start, time.time(), c.interval)}")


def scenario_rolling(c: Cluster, targets: list[Target], log: list[str]) -> None:
    start = time.time()
    for i in range(c.n):
        c.proc(i).stop(signal.SIGTERM)
        c.start(i)
        c.wait_owners(c.names(), [j for j in range(c.n)])
    c.wait_full()  # the last one's ramp steps are inside the window too
    time.sleep(2 * c.interval)
    log.append(f"rolling restart of {c.n} (SIGTERM, restart, wait for the share each, then "
               "for the last one's whole share): "
               f"{time.time() - start:.0f}s; {scrape_stats(targets, start, time.time(), c.interval)}")


def recovery(c: Cluster, targets: list[Target], start: float, ended: float, watch: Watch,
             timeout: float = 120.0) -> tuple[float, str]:
    """After a fault ended: seconds until every view agrees again, then two intervals later
    the watch's counts and the scrape figures over the whole fault and since it ended."""
    back = c.wait_owners(c.names(), list(range(c.n)), timeout=timeout)
    time.sleep(2 * c.interval)
    return back, (f"{watch.stop()}; {scrape_stats(targets, start, time.time(), c.interval)}; "
                  f"after {scrape_stats(targets, ended, time.time(), c.interval)}")


def first_elsewhere(targets: list[Target], moved: set[str], after: float) -> float:
    """When every one of the victim's targets had been scraped after ``after`` (the victim left
    agent0's ring), in seconds after it; a starved victim may still scrape one late."""
    firsts = [min((r.time for r in list(t.requests) if r.time >= after), default=float("inf"))
              for t in targets if t.address in moved]
    return max(firsts, default=after) - after


def scenario_starve(
    c: Cluster, targets: list[Target], log: list[str], pause: float = 60.0, quota: float = 0.03
) -> None:
    """One agent's whole process in a cgroup at ``quota`` of one CPU for ``pause`` seconds."""
    victim = c.n - 1
    group = CGROUP / f"shoal-load-{os.getpid()}"
    for stale in CGROUP.glob("shoal-load-*"):  # a killed run's: its tasks go back to the root
        for task in (stale / "tasks").read_text().split():
            with contextlib.suppress(OSError):
                (CGROUP / "tasks").write_text(task)
        with contextlib.suppress(OSError):
            stale.rmdir()
    group.mkdir()
    pid = c.proc(victim).popen.pid
    mine = c.owned(victim)
    watch = Watch(c, victim)
    elsewhere = ""
    try:
        (group / "cpu.cfs_quota_us").write_text(str(int(quota * 100_000)))
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                (group / "tasks").write_text(task.name)
        start = time.time()
        demoted = ""
        with contextlib.suppress(Exception):
            demoted = f"{c.wait_owners(c.names(victim), [0], timeout=pause):.1f}s"
            left = time.time()
            time.sleep(min(3 * c.interval, max(0.0, pause - (left - start))))
            elsewhere = f"{left - start + first_elsewhere(targets, mine, left):.1f}s"
        time.sleep(max(0.0, pause - (time.time() - start)))
    finally:
        for task in (group / "tasks").read_text().split():
            with contextlib.suppress(OSError):
                (CGROUP / "tasks").write_text(task)
        with contextlib.suppress(OSError):
            group.rmdir()
    ended = time.time()
    back, figures = recovery(c, targets, start, ended, watch, timeout=180)
    full = ""
    with contextlib.suppress(Exception):  # the ramp: until it gossips its whole share again
        c.wait_full()
        full = f"; full share gossiped {time.time() - ended:.1f}s after the quota ended"
    log.append(f"CPU quota {quota:.0%} for {pause:.0f}s: out of agent0's ring after "
               f"{demoted or 'never'}; its {len(mine)} targets all scraped after that by "
               f"{elsewhere or '-'}; back in agent0's ring {back:.1f}s after the quota ended{full}; "
               f"{figures}; {watch.timeline()}")


def scenario_freeze(c: Cluster, targets: list[Target], log: list[str], pause: float = 20.0) -> None:
    """The victim's WAL filesystem frozen (fsfreeze) for ``pause`` seconds: its gossip answers."""
    assert c.disk is not None
    victim = c.n - 1
    watchers = [i for i in range(c.n) if i != victim]
    watch = Watch(c, victim)
    start = time.time()
    try:
        c.disk.freeze()
        demoted = c.wait_owners(c.names(victim), watchers, timeout=pause + 30)
        seen = next(p for p in c.peers(0) if p["name"] == f"agent{victim}")
        time.sleep(max(0.0, pause - (time.time() - start)))
    finally:
        c.disk.thaw()
    back, figures = recovery(c, targets, start, time.time(), watch)
    log.append(f"WAL disk frozen {pause:.0f}s: out of the others' rings after {demoted:.1f}s "
               f"(agent0 saw it {seen['liveness']}, demotedForProgress={seen['demotedForProgress']}); "
               f"share back {back:.1f}s after the thaw; {figures}")


def wait_alone(c: Cluster, i: int, timeout: float) -> float:
    """When agent i, read from inside its namespace, sees only itself owning targets."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with contextlib.suppress(OSError, ValueError):
            if c.owners(i, inside=True) == {f"agent{i}"}:
                return time.time()
        time.sleep(0.5)
    raise TimeoutError(f"agent{i} never saw itself alone")


def scenario_partition(
    c: Cluster, targets: list[Target], log: list[str], pause: float = 60.0
) -> None:
    """The victim's link down for ``pause`` seconds (``--netns``), then up again."""
    assert c.net is not None, "the partition scenario needs --netns"
    victim = c.n - 1
    watchers = [i for i in range(c.n) if i != victim]
    watch = Watch(c, victim)
    start = time.time()
    try:
        c.net.partition(victim)
        cut = c.wait_owners(c.names(victim), watchers, timeout=pause)
        alone = wait_alone(c, victim, timeout=pause) - start
        time.sleep(max(0.0, pause - (time.time() - start)))
    finally:
        c.net.heal(victim)
    back, figures = recovery(c, targets, start, time.time(), watch)
    log.append(f"partition {pause:.0f}s (link down): out of the others' rings after {cut:.1f}s, "
               f"alone in its own view after {alone:.1f}s; every view agrees {back:.1f}s after "
               f"healing; {figures}")


def sides_scraping(targets: list[Target], sides: list[set[str]], start: float, end: float) -> int:
    """How many targets were scraped from every side in [start, end) (by scraper address)."""
    return sum(
        1 for t in targets
        if all({r.client for r in list(t.requests) if start <= r.time < end} & side for side in sides)
    )


def scenario_split(c: Cluster, targets: list[Target], log: list[str], pause: float = 60.0) -> None:
    """The agents cut into two groups (the first n // 2, the rest) for ``pause`` seconds
    (``--netns``; iptables in each namespace): both groups still reach the targets and the
    backend, so each, in its own view, scrapes every target (duplicates over gaps)."""
    assert c.net is not None, "the split scenario needs --netns"
    half = c.n // 2
    groups = [list(range(half)), list(range(half, c.n))]
    watch = Watch(c, c.n - 1)  # agent0's view of an agent on the other side
    start = time.time()
    try:
        c.net.split(groups)
        for group in groups:
            c.wait_owners({f"agent{i}" for i in group}, group, timeout=pause)
        views = time.time() - start
        time.sleep(max(c.interval, pause - views))
        sides = [{c.hosts[i] for i in group} for group in groups]
        both = sides_scraping(targets, sides, start + views + c.interval, time.time())
        during = scrape_stats(targets, start, time.time(), c.interval)
    finally:
        c.net.unsplit()
    back, figures = recovery(c, targets, start, time.time(), watch)
    log.append(f"split {half}|{c.n - half} for {pause:.0f}s: each side alone in its views after "
               f"{views:.1f}s; {both} of {len(targets)} targets scraped from both sides once "
               f"settled; during {during}; every view agrees {back:.1f}s after healing; {figures}")


def gossip_events(c: Cluster) -> dict[str, float]:
    """Suspicions, deaths and refutations every agent counted so far, summed."""
    out = {"node_suspect": 0.0, "node_leave": 0.0, "refute": 0.0}
    for i in range(c.n):
        text = httpx.get(c.url(i) + "/metrics", timeout=3).text
        for line in text.splitlines():
            if line.startswith("cluster_node_gossip_received_events_total{"):
                event = line.split('event="')[1].split('"')[0]
                if event in out:
                    out[event] += float(line.rsplit(" ", 1)[1])
    return out


def view_changes(c: Cluster, pause: float) -> int:
    """Every agent's view of who owns targets polled every 0.5 s for ``pause`` seconds:
    how many times any of them changed (with nobody down, each is a false demotion)."""
    views = [c.owners(i) for i in range(c.n)]
    changes = 0
    start = time.time()
    while time.time() - start < pause:
        time.sleep(0.5)
        for i in range(c.n):
            with contextlib.suppress(httpx.HTTPError, ValueError):
                now = c.owners(i)
                changes += now != views[i]
                views[i] = now
    return changes


def scenario_lossy(
    c: Cluster, targets: list[Target], log: list[str], pause: float = 180.0, loss: float = 0.05
) -> None:
    """``loss`` of the packets between agents dropped for ``pause`` seconds (``--netns``):
    a healthy cluster must not flap."""
    assert c.net is not None, "the lossy scenario needs --netns"
    before = gossip_events(c)
    start = time.time()
    try:
        c.net.lose(loss)
        changes = view_changes(c, pause)
    finally:
        c.net.unsplit()
    after = gossip_events(c)
    counts = {k: round(after[k] - before[k]) for k in after}
    log.append(f"loss {loss:.0%} between agents for {pause:.0f}s: events counted over all "
               f"agents {counts}; changes in the agents' views of who owns targets: {changes}; "
               f"{scrape_stats(targets, start, time.time(), c.interval)}")


def scenario_relayed(
    c: Cluster, targets: list[Target], log: list[str], pause: float = 180.0
) -> None:
    """``pause`` seconds of the gossip link through the delaying, dropping relay
    (``--relay-delay``, ``--relay-loss``; agents advertise the relay): must not flap."""
    assert c.relay is not None, "the relayed scenario needs --relay-delay or --relay-loss"
    before, sent = gossip_events(c), c.relay.counts()
    start = time.time()
    changes = view_changes(c, pause)
    after, now = gossip_events(c), c.relay.counts()
    counts = {k: round(after[k] - before[k]) for k in after}
    log.append(f"relay delay {c.relay.delay * 1000:.0f}ms loss {c.relay.loss:.0%} for "
               f"{pause:.0f}s: {now[0] - sent[0]} datagrams relayed, {now[1] - sent[1]} dropped; "
               f"events counted over all agents {counts}; changes in the agents' views of who "
               f"owns targets: {changes}; {scrape_stats(targets, start, time.time(), c.interval)}")


def node_of(targets: list[Target], n: int) -> dict[str, str]:
    """Node-affine layout: three targets in four name a node (agent0, agent1, ... in turn),
    the rest have none and go by the ring."""
    return {t.address: f"agent{k % n}" for k, t in enumerate(targets) if k % 4 != 3}


def scenario_affine(c: Cluster, targets: list[Target], log: list[str], pause: float = 60.0) -> None:
    """Node-affine targets (``clustering { node_affine = true }``): the share each node's own
    agent scrapes in steady state, then the last agent SIGSTOPped for ``pause`` seconds: how
    fast its node's targets fall back to the ring and return after SIGCONT."""
    nodes = node_of(targets, c.n)
    time.sleep(2 * c.interval)
    start = time.time()
    time.sleep(4 * c.interval)
    owned = {f"agent{i}": c.owned(i) for i in range(c.n)}
    affine = [t for t in targets if t.address in nodes]
    own = sum(1 for t in affine if t.address in owned[nodes[t.address]])
    by_addr = ""
    if c.net is not None:  # in namespaces the targets see which agent scraped them
        scrapes = [r for t in affine for r in list(t.requests)
                   if start <= r.time < time.time()
                   and r.client == c.hosts[int(nodes[t.address][5:])]]
        total = sum(1 for t in affine for r in list(t.requests) if start <= r.time < time.time())
        by_addr = f", {len(scrapes)} of {total} of their scrapes by their node's agent"
    log.append(f"node-affine steady: {own} of {len(affine)} node targets owned by their node's "
               f"agent{by_addr}; shares {[len(owned[f'agent{i}']) for i in range(c.n)]}; "
               f"{scrape_stats(targets, start, time.time(), c.interval)}")

    victim = c.n - 1
    mine = [t for t in affine if nodes[t.address] == f"agent{victim}"]
    watch = Watch(c, victim)
    stopped = time.time()
    os.killpg(c.proc(victim).popen.pid, signal.SIGSTOP)
    out = c.wait_owners(c.names(victim), [i for i in range(c.n) if i != victim])
    time.sleep(max(2 * c.interval, pause - (time.time() - stopped)))
    firsts = [min((r.time for r in list(t.requests) if r.time > stopped), default=float("inf"))
              for t in mine]
    resumed = time.time()
    os.killpg(c.proc(victim).popen.pid, signal.SIGCONT)
    addrs = {t.address for t in mine}
    procs.eventually(lambda: addrs <= c.owned(victim), timeout=120, interval=0.2)
    back = time.time() - resumed
    rest, figures = recovery(c, targets, stopped, resumed, watch)
    log.append(f"node-affine SIGSTOP {pause:.0f}s: out of the others' rings after {out:.1f}s; "
               f"its {len(mine)} node targets first scraped elsewhere {min(firsts) - stopped:.1f}-"
               f"{max(firsts) - stopped:.1f}s after the stop; after SIGCONT its node targets "
               f"back in {back:.1f}s (every view agreeing {rest:.1f}s later); {figures}; "
               f"its node targets {scrape_stats(mine, stopped, time.time(), c.interval)}")


SCENARIOS = {"steady": scenario_steady, "stop": scenario_stop, "kill": scenario_kill,
             "rolling": scenario_rolling, "starve": scenario_starve, "freeze": scenario_freeze,
             "partition": scenario_partition, "split": scenario_split, "affine": scenario_affine,
             "lossy": scenario_lossy, "relayed": scenario_relayed}


def payload(i: int, series: int) -> str:
    return "".join(f'load_metric{{i="{i}",s="{k}"}} {k}\n' for k in range(series))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=3)
    ap.add_argument("--targets", type=int, default=60)
    ap.add_argument("--series", type=int, default=1, help="series per target")
    ap.add_argument("--interval", type=float, default=15.0)
    ap.add_argument("--scenarios", default="steady,stop,kill,rolling,starve")
    ap.add_argument("--pause", type=float, default=60.0, help="SIGSTOP, starvation, partition (s)")
    ap.add_argument("--freeze", type=float, default=20.0, help="how long the WAL disk is frozen (s)")
    ap.add_argument("--quota", type=float, default=0.03, help="starvation: share of one CPU")
    ap.add_argument("--loss", type=float, default=0.05, help="lossy: share of packets dropped")
    ap.add_argument("--relay-delay", type=float, default=0.0, help="relayed: gossip delay (ms)")
    ap.add_argument("--relay-loss", type=float, default=0.0, help="relayed: datagrams dropped")
    ap.add_argument("--netns", action="store_true", help="agents in network namespaces")
    ap.add_argument("--workdir", default="", help="keep agents' logs here instead of a temporary folder")
    a = ap.parse_args()
    scenarios = a.scenarios.split(",")
    unknown = [name for name in scenarios if name not in SCENARIOS]
    if unknown or ({"partition", "split", "lossy"} & set(scenarios) and not a.netns):
        ap.error(f"unknown scenarios {unknown}" if unknown else "partition, split, lossy need --netns")
    log: list[str] = []
    keep = contextlib.nullcontext(a.workdir) if a.workdir else tempfile.TemporaryDirectory()
    with contextlib.ExitStack() as stack:
        d = Path(stack.enter_context(keep))
        net = stack.enter_context(network(NET_INDEX, a.agents)) if a.netns else None
        disk = stack.enter_context(loop_disk(d)) if "freeze" in scenarios else None
        host = net.host if net is not None else "127.0.0.1"
        targets = [Target(payload(i, a.series), host=host).start() for i in range(a.targets)]
        stack.callback(lambda: [t.stop() for t in targets])
        prom = stack.enter_context(procs.prometheus(d / "prom", host=host))
        cfg = d / "shoal.alloy"
        nodes = node_of(targets, a.agents) if "affine" in scenarios else None
        cfg.write_text(config(targets, prom.url, nodes).replace('"1s"', f'"{a.interval:g}s"')
                       .replace('"800ms"', f'"{min(10.0, 0.8 * a.interval):g}s"'))
        relay = None
        if a.relay_delay or a.relay_loss:
            relay = Relay(a.relay_delay / 1000, a.relay_loss)
            stack.callback(relay.close)
        c = Cluster(a.agents, d, cfg, a.interval, net, disk, relay)
        try:
            for i in range(a.agents):
                c.start(i)
            c.wait_owners(c.names(), list(range(a.agents)))
            c.wait_full()
            for name in scenarios:
                pause = {"freeze": a.freeze}.get(name, a.pause)
                paused = ("stop", "starve", "freeze", "partition", "split", "affine", "lossy",
                          "relayed")
                kw = {"pause": pause} if name in paused else {}
                if name == "lossy":
                    kw["loss"] = a.loss
                if name == "starve":
                    kw["quota"] = a.quota
                SCENARIOS[name](c, targets, log, **kw)
                print(log[-1], flush=True)
            log.append("gossip ack latency (bucket bounds, s): " + "; ".join(c.ack_latency()))
            time.sleep(1)
            log.append(f"Prometheus rejected samples: {rejected_writes(prom.url):.0f}")
        finally:
            if disk is not None:
                disk.thaw()  # a frozen writer cannot exit
            for p in c.procs:
                if p is not None:
                    with contextlib.suppress(OSError):
                        os.killpg(p.popen.pid, signal.SIGCONT)
                    p.stop()
    print(f"agents={a.agents} targets={a.targets} series={a.series} interval={a.interval}s "
          f"netns={a.netns} load={os.getloadavg()[0]:.1f}")
    print("\n".join(log))


if __name__ == "__main__":
    main()
