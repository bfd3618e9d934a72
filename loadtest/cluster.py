"""Issue 13's cluster figures: real ``shoal run`` agents sharing real targets at a 15 s interval.

Scenarios, each measured at the targets (every request is logged with its arrival
time, so a missed or duplicated scrape is seen, not inferred): steady share,
SIGSTOP for 60 s and SIGCONT, SIGKILL and restart, a rolling restart, CPU
starvation through a cgroup CPU quota, and the gossip ack latency each agent
measured (``shoal_cluster_probe_ack_seconds``). The failure detector keeps its
defaults. A real Prometheus receives the samples and its rejected-sample
counters are read at the end. Figures go to docs/clustering.md.

    python loadtest/cluster.py --agents 3 --scenarios steady,stop,kill,starve
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import procs  # noqa: E402 - after the path fix above
from tests.cluster.test_agents import config, free_port, plain, rejected_writes  # noqa: E402
from tests.targets import Target  # noqa: E402

CGROUP = Path("/sys/fs/cgroup/cpu")  # cgroup v1 here; v2 would be cpu.max


class Cluster:
    def __init__(self, n: int, tmp: Path, cfg: Path, interval: float) -> None:
        self.n, self.tmp, self.cfg, self.interval = n, tmp, cfg, interval
        self.hosts = [f"127.0.8.{i + 2}" for i in range(n)]
        self.ports = [free_port(h) for h in self.hosts]
        self.procs: list[procs.Proc | None] = [None] * n

    def url(self, i: int) -> str:
        return f"http://{self.hosts[i]}:{self.ports[i]}"

    def start(self, i: int) -> None:
        join = ",".join(f"{h}:{p}" for h, p in zip(self.hosts, self.ports, strict=True))
        workdir = self.tmp / f"agent{i}"
        workdir.mkdir(exist_ok=True)
        p = procs.agent(
            workdir, self.cfg, f"--server.http.listen-addr={self.hosts[i]}:{self.ports[i]}",
            "--cluster.enabled", f"--cluster.node-name=agent{i}", f"--cluster.join-addresses={join}",
            "--cluster.name=load", "--config.watch-interval=0",
        )
        p.url = self.url(i)
        self.procs[i] = p
        procs.wait_http(p.url + "/-/ready", proc=p.popen)

    def proc(self, i: int) -> procs.Proc:
        p = self.procs[i]
        assert p is not None
        return p

    def owners(self, i: int) -> set[str]:
        peers = httpx.get(self.url(i) + "/api/v0/web/peers", timeout=3).json()
        return {p["name"] for p in peers if p["ownsTargets"] and not p["heldBack"]}

    def owned(self, i: int) -> set[str]:
        info = httpx.get(self.url(i) + "/api/v0/web/components/prometheus.scrape.t", timeout=3).json()
        body = {a["name"]: plain(a["value"]) for a in info["debugInfo"]}
        return {t["labels"]["__address__"] for t in body["targets"]}  # type: ignore[index,union-attr]

    def wait_owners(self, names: set[str], watchers: list[int], timeout: float = 120.0) -> float:
        start = time.time()
        procs.eventually(lambda: all(self.owners(i) == names for i in watchers), timeout=timeout, interval=0.2)
        return time.time() - start

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


def scrape_stats(targets: list[Target], start: float, end: float, interval: float) -> dict[str, float]:
    """Per-target gaps and duplicates in [start, end): the worst gap and how many close pairs."""
    worst, dups, total = 0.0, 0, 0
    for t in targets:
        ts = sorted(r.time for r in list(t.requests) if start <= r.time < end)
        total += len(ts)
        edges = [start, *ts, end]
        worst = max(worst, max(b - a for a, b in zip(edges, edges[1:], strict=False)))
        dups += sum(1 for a, b in zip(ts, ts[1:], strict=False) if b - a < 0.5 * interval)
    expected = len(targets) * (end - start) / interval
    return {"scrapes": total, "expected": round(expected, 1), "worst_gap_s": round(worst, 1),
            "duplicates": dups}


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
    time.sleep(2 * c.interval)
    log.append(f"rolling restart of {c.n} (SIGTERM, restart, wait for the share each): "
               f"{time.time() - start:.0f}s; {scrape_stats(targets, start, time.time(), c.interval)}")


def scenario_starve(
    c: Cluster, targets: list[Target], log: list[str], pause: float = 60.0, quota: float = 0.02
) -> None:
    """One agent's whole process in a cgroup at ``quota`` of one CPU for ``pause`` seconds."""
    victim = c.n - 1
    group = CGROUP / f"shoal-load-{os.getpid()}"
    group.mkdir()
    try:
        (group / "cpu.cfs_quota_us").write_text(str(int(quota * 100_000)))
        pid = c.proc(victim).popen.pid
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                (group / "tasks").write_text(task.name)
        start = time.time()
        demoted = ""
        with contextlib.suppress(Exception):
            demoted = f"{c.wait_owners(c.names(victim), [0], timeout=60):.1f}s"
        time.sleep(max(0.0, pause - (time.time() - start)))
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                (CGROUP / "tasks").write_text(task.name)
        ended = time.time()
        back = c.wait_owners(c.names(), list(range(c.n)), timeout=180)
        time.sleep(2 * c.interval)
        log.append(f"CPU quota {quota:.0%} for {pause:.0f}s: out of the others' rings after {demoted or 'never'}; "
                   f"share back {back:.1f}s after; {scrape_stats(targets, start, time.time(), c.interval)}; "
                   f"after {scrape_stats(targets, ended, time.time(), c.interval)}")
    finally:
        with contextlib.suppress(OSError):
            group.rmdir()


PAUSED = ("stop", "starve")
SCENARIOS = {"steady": scenario_steady, "stop": scenario_stop, "kill": scenario_kill,
             "rolling": scenario_rolling, "starve": scenario_starve}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=3)
    ap.add_argument("--targets", type=int, default=60)
    ap.add_argument("--interval", type=float, default=15.0)
    ap.add_argument("--scenarios", default="steady,stop,kill,rolling,starve")
    ap.add_argument("--pause", type=float, default=60.0, help="SIGSTOP and starvation length (s)")
    ap.add_argument("--workdir", default="", help="keep agents' logs here instead of a temporary folder")
    a = ap.parse_args()
    targets = [Target(f'load_metric{{i="{i}"}} {i}\n').start() for i in range(a.targets)]
    log: list[str] = []
    keep = contextlib.nullcontext(a.workdir) if a.workdir else tempfile.TemporaryDirectory()
    with keep as d, procs.prometheus(Path(d) / "prom") as prom:
        cfg = Path(d) / "shoal.alloy"
        cfg.write_text(config(targets, prom.url).replace('"1s"', f'"{a.interval:g}s"')
                       .replace('"800ms"', f'"{min(10.0, 0.8 * a.interval):g}s"'))
        c = Cluster(a.agents, Path(d), cfg, a.interval)
        try:
            for i in range(a.agents):
                c.start(i)
            c.wait_owners(c.names(), list(range(a.agents)))
            for name in a.scenarios.split(","):
                SCENARIOS[name](c, targets, log, **({"pause": a.pause} if name in PAUSED else {}))
                print(log[-1], flush=True)
            log.append("gossip ack latency (bucket bounds, s): " + "; ".join(c.ack_latency()))
            time.sleep(1)
            log.append(f"Prometheus rejected samples: {rejected_writes(prom.url):.0f}")
        finally:
            for p in c.procs:
                if p is not None:
                    with contextlib.suppress(OSError):
                        os.killpg(p.popen.pid, signal.SIGCONT)
                    p.stop()
            for t in targets:
                t.stop()
    print(f"agents={a.agents} targets={a.targets} interval={a.interval}s")
    print("\n".join(log))


if __name__ == "__main__":
    main()
