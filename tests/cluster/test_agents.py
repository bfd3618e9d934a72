"""Three real ``shoal run`` processes sharing real targets, writing to a real Prometheus.

Scrapes are counted at the targets (each request is logged with its arrival
time), so "exactly once per interval" is measured, not inferred. Agents run on
their own 127.0.x.y addresses with a 1 s scrape interval and a fast failure
detector (``--cluster.tuning``) to keep the test bounded. Prometheus' own
counters of rejected remote-write samples tell whether two agents ever wrote the
same series (a duplicate scrape lands out of order or as a duplicate timestamp).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import procs
from tests.targets import Target

pytestmark = pytest.mark.timeout(240)

INTERVAL = 1.0
TARGETS = 18
HOSTS = ["127.0.9.2", "127.0.9.3", "127.0.9.4"]
TUNING = (
    "probe_interval=0.4,probe_timeout=0.2,suspicion_mult=3,push_pull_interval=2,"
    "rejoin_interval=2,gossip_to_the_dead=10,progress_timeout=2.5,healthy_hold=3,"
    "drain_hold=3,ramp_step=1,start_grace=2"
)
SCRAPE = "prometheus.scrape.t"


def free_port(host: str) -> int:
    """A port free for both TCP (HTTP) and UDP (gossip) on ``host``."""
    while True:
        with socket.socket() as t:
            t.bind((host, 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind((host, port))
                except OSError:
                    continue
            return port


def config(targets: list[Target], prom: str, nodes: dict[str, str] | None = None) -> str:
    """The shared configuration; ``nodes`` (address -> node name) labels targets with their
    Kubernetes node and turns node affinity on."""
    nodes = nodes or {}

    def item(t: Target) -> str:
        node = nodes.get(t.address)
        extra = f', "__meta_kubernetes_pod_node_name" = "{node}"' if node else ""
        return f'{{"__address__" = "{t.address}"{extra}}}'

    items = ", ".join(item(t) for t in targets)
    affine = "\n    node_affine = true" if nodes else ""
    return f"""
prometheus.scrape "t" {{
  targets = [{items}]
  forward_to = [prometheus.remote_write.p.receiver]
  scrape_interval = "1s"
  scrape_timeout = "800ms"
  job_name = "cluster"
  clustering {{
    enabled = true{affine}
  }}
}}
prometheus.remote_write "p" {{
  endpoint {{
    url = "{prom}/api/v1/write"
    queue_config {{
      batch_send_deadline = "200ms"
    }}
  }}
}}
"""


def plain(v: dict) -> object:
    """A value from Alloy's JSON encoding of a body, as plain Python."""
    if v["type"] == "object":
        return {kv["key"]: plain(kv["value"]) for kv in v["value"]}
    if v["type"] == "array":
        return [plain(x) for x in v["value"]]
    return v["value"]


class Agents:
    """``shoal run`` agents on ``hosts``; ``configs`` gives an agent its own file (default: cfg)."""

    def __init__(self, tmp: Path, cfg: Path, hosts: list[str] = HOSTS,
                 configs: dict[int, Path] | None = None) -> None:
        self.tmp, self.cfg, self.hosts = tmp, cfg, hosts
        self.configs = configs or {}
        self.ports = {h: free_port(h) for h in hosts}
        self.procs: dict[str, procs.Proc] = {}

    def url(self, i: int) -> str:
        return f"http://{self.hosts[i]}:{self.ports[self.hosts[i]]}"

    def start(self, i: int, *extra: str) -> None:
        """Agent ``i``; ``extra`` flags come last, so they win (e.g. another --storage.path)."""
        host = self.hosts[i]
        join = ",".join(f"{h}:{self.ports[h]}" for h in self.hosts)
        workdir = self.tmp / f"agent{i}"
        workdir.mkdir(exist_ok=True)
        p = procs.agent(
            workdir, self.configs.get(i, self.cfg),
            f"--server.http.listen-addr={host}:{self.ports[host]}",  # the last one given wins
            "--cluster.enabled", f"--cluster.node-name=agent{i}",
            f"--cluster.join-addresses={join}", "--cluster.name=test",
            f"--cluster.tuning={TUNING}", "--config.watch-interval=0", *extra,
        )
        p.url = self.url(i)
        self.procs[host] = p
        procs.wait_http(p.url + "/-/ready", proc=p.popen)

    def signal(self, i: int, sig: int) -> None:
        self.procs[self.hosts[i]].popen.send_signal(sig)

    def peers(self, i: int) -> list[dict]:
        return httpx.get(self.url(i) + "/api/v0/web/peers", timeout=3).json()

    def owned(self, i: int) -> set[str]:
        info = httpx.get(self.url(i) + f"/api/v0/web/components/{SCRAPE}", timeout=3).json()
        body = {a["name"]: plain(a["value"]) for a in info["debugInfo"]}
        return {t["labels"]["__address__"] for t in body["targets"]}

    def participants(self, i: int) -> set[str]:
        """Who owns its whole share in agent i's view (a returning agent ramps up first, and a
        share applies from its announced instant, ``rampAt``: until then the others keep it)."""
        now = time.time()
        return {p["name"] for p in self.peers(i) if p["ownsTargets"] and not p["heldBack"]
                and p["progress"].get("rampWeight", 1.0) == 1.0
                and p["progress"].get("rampAt", 0.0) <= now}

    def stop_all(self) -> None:
        for p in self.procs.values():
            with contextlib.suppress(OSError):
                p.popen.send_signal(signal.SIGCONT)
        procs.stop_all(self.procs.values())


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Agents, list[Target], procs.Proc]]:
    targets = [Target(f"cluster_test_metric{{i=\"{i}\"}} {i}\n").start() for i in range(TARGETS)]
    with procs.prometheus(tmp_path / "prom") as prom:
        cfg = tmp_path / "shoal.alloy"
        cfg.write_text(config(targets, prom.url))
        agents = Agents(tmp_path, cfg)
        with running(agents, targets):
            yield agents, targets, prom


@contextlib.contextmanager
def running(agents: Agents, targets: list[Target]) -> Iterator[None]:
    """Start every agent; at the end stop them and the targets."""
    try:
        for i in range(len(agents.hosts)):
            agents.start(i)
        yield
    finally:
        agents.stop_all()
        for t in targets:
            t.stop()


def times(t: Target, since: float, until: float = float("inf")) -> list[float]:
    return sorted(r.time for r in list(t.requests) if since <= r.time < until)


def min_gap(ts: list[float]) -> float:
    return min((b - a for a, b in zip(ts, ts[1:], strict=False)), default=float("inf"))


def settled(agents: Agents, names: set[str], watchers: list[int] | None = None) -> bool:
    """Every agent in ``names`` (or ``watchers``) sees exactly ``names`` as owning targets."""
    live = watchers or [i for i in range(len(agents.hosts)) if f"agent{i}" in names]
    return all(agents.participants(i) == names for i in live)


def settle(agents: Agents) -> tuple[set[str], list[set[str]]]:
    """Wait until every agent participates, then two intervals: the names, and what each owns."""
    everyone = {f"agent{i}" for i in range(len(agents.hosts))}
    procs.eventually(lambda: settled(agents, everyone), timeout=30)
    time.sleep(2 * INTERVAL)
    return everyone, [agents.owned(i) for i in range(len(agents.hosts))]


def check_exactly_once(targets: list[Target], start: float, end: float) -> None:
    """Each target scraped once per interval in [start, end): count and spacing."""
    expected = (end - start) / INTERVAL
    for t in targets:
        ts = times(t, start, end)
        assert abs(len(ts) - expected) <= 1.5, (t.address, len(ts), expected)
        assert min_gap(ts) > 0.5 * INTERVAL, (t.address, ts)


def taken_over(
    agents: Agents, survivors: set[str], victim: list[Target], watchers: list[int] | None = None
) -> float:
    """Wait until the survivors alone own the targets; each of the victim's targets is then
    scraped by one of them within two intervals. Returns when the survivors settled."""
    procs.eventually(lambda: settled(agents, survivors, watchers), timeout=20, interval=0.1)
    detected = time.time()
    time.sleep(2 * INTERVAL + 0.5)
    for t in victim:
        after = times(t, detected)
        assert after and after[0] - detected <= 2 * INTERVAL + 0.5, (t.address, after[:2])
    return detected


def rejected_writes(prom: str) -> float:
    """Samples Prometheus refused: out of order (TSDB counter) and any 4xx on the write handler."""
    out = 0.0
    for expr in (
        'sum(prometheus_http_requests_total{handler="/api/v1/write",code=~"4.."})',
        "sum(prometheus_tsdb_out_of_order_samples_total)",
    ):
        out += sum(float(r["value"][1]) for r in procs.query(prom, expr))
    return out


def test_three_agents_share_targets_and_survive_stop_kill_restart(
    cluster: tuple[Agents, list[Target], procs.Proc],
) -> None:
    agents, targets, prom = cluster
    everyone, owned = settle(agents)
    # Settled: the agents split the targets between them, each scraped exactly once per interval.
    assert set().union(*owned) == {t.address for t in targets}
    assert sum(len(o) for o in owned) == TARGETS and all(owned), [len(o) for o in owned]
    start = time.time()
    time.sleep(6 * INTERVAL)
    check_exactly_once(targets, start, time.time())

    # SIGSTOP agent1: the failure detector declares it dead; the others scrape its targets.
    victim = [t for t in targets if t.address in owned[1]]
    stopped = time.time()
    agents.signal(1, signal.SIGSTOP)
    detected = taken_over(agents, everyone - {"agent1"}, victim)
    print(f"SIGSTOP: dead in the others' view after {detected - stopped:.1f} s")

    # SIGCONT: it refutes, holds back until its view is fresh, then takes its share back
    # with no two agents scraping one target (no burst, no rejected samples).
    resumed = time.time()
    agents.signal(1, signal.SIGCONT)
    procs.eventually(lambda: settled(agents, everyone), timeout=20, interval=0.1)
    procs.eventually(lambda: agents.owned(1), timeout=10)
    back = time.time()
    time.sleep(3 * INTERVAL)
    for t in targets:
        assert min_gap(times(t, resumed - INTERVAL)) > 0.5 * INTERVAL, (t.address, times(t, resumed))
    print(f"SIGCONT: share back after {back - resumed:.1f} s")
    time.sleep(1.0)  # the last samples reach Prometheus (batch deadline 200 ms)
    assert rejected_writes(prom.url) == 0

    # SIGKILL agent2: its targets move; restarted under the same name, it rejoins.
    owned2 = agents.owned(2)
    victim = [t for t in targets if t.address in owned2]
    agents.signal(2, signal.SIGKILL)
    agents.procs[HOSTS[2]].popen.wait(5)
    taken_over(agents, everyone - {"agent2"}, victim)
    agents.start(2)
    procs.eventually(lambda: settled(agents, everyone), timeout=30, interval=0.2)
    procs.eventually(lambda: agents.owned(2), timeout=10)
    time.sleep(2 * INTERVAL)
    start = time.time()
    time.sleep(4 * INTERVAL)
    check_exactly_once(targets, start, time.time())
    time.sleep(1.0)
    assert rejected_writes(prom.url) == 0
    # Everything written reached Prometheus under one series per target.
    assert len(procs.query(prom.url, 'cluster_test_metric{job="cluster"}')) == TARGETS
