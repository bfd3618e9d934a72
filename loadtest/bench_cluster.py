"""Figures for docs/clustering.md: ring balance and lookup cost, time to declare a member
dead with the default settings, and probe-to-ack latency idle and with busy threads.

All nodes run in this one process on 127.0.0.x loopback addresses, each in its own
thread, as in tests/cluster; the figures for real agents under load come from the
cluster harness (issue 13).

    python loadtest/bench_cluster.py [--runs 3] [--spin 20] [--switch-interval 0.001]

``--heavy`` measures instead what clustering costs a real ``shoal run`` under issue 6's
heavy workload (200 nginx targets x 1,000 series every 1 s, loadtest/harness, an nginx
sink answering 204): one agent scrapes all of it (its scrape has no clustering block,
so the load is the same) with clustering off, then on in a cluster with two idle
agents. Per phase, over the window: the loaded agent's CPU (utime+stime of its
process tree) and median RSS, its samples scraped per second, its event-loop lag p99,
and the probe-to-ack latency (``shoal_cluster_probe_ack_seconds``) the loaded agent
measured probing its peers and the peers measured probing it. It holds
/tmp/shoal-loadtest.lock (the targets use loadtest/run's loopback addresses).

    python loadtest/bench_cluster.py --heavy [--window 60] [--warmup 20] [--rounds 2]
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import structlog
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.cluster import Liveness, Node, Ring, Settings  # noqa: E402
from loadtest.harness import measure, nginx  # noqa: E402
from loadtest.harness.agents import Job, Shoal, shoal_config  # noqa: E402
from loadtest.harness.proc import Proc, spawn, stop_all, wait_http  # noqa: E402
from loadtest.harness.targets import write_payloads  # noqa: E402
from tests.procs import free_port  # noqa: E402

KEYS = [
    f"job-{i % 13}/http/10.{i // 65536}.{i // 256 % 256}.{i % 256}:9100/metrics"
    for i in range(10_000)
]
_host = iter(range(50, 250))


def ring_figures() -> None:
    spread = []
    for n in range(3, 12):
        counts = Counter(
            Ring([f"shoal-{i}.shoal.monitoring.svc" for i in range(n)]).owner(k) for k in KEYS
        )
        spread.append(f"{n}:{max(counts.values()) / (len(KEYS) / n):.3f}")
    print("ring busiest/mean over 10,000 keys:", " ".join(spread))
    for n in (3, 11):
        ring = Ring([f"shoal-{i}" for i in range(n)])
        times = []
        for _ in range(5):
            t = time.perf_counter()
            for k in KEYS:
                ring.owner(k)
            times.append(time.perf_counter() - t)
        print(
            f"ring lookup 10,000 keys x {n} members: best {min(times) * 1e3:.1f} ms, median {sorted(times)[2] * 1e3:.1f} ms"
        )


def cluster(size: int, prefix: str) -> tuple[list[Node], list[CollectorRegistry]]:
    regs = [CollectorRegistry() for _ in range(size)]
    nodes = [
        Node(
            Settings(name=f"{prefix}{i}", bind_host=f"127.0.1.{next(_host)}", cluster_name="bench"),
            registry=regs[i],
        )
        for i in range(size)
    ]
    for n in nodes:
        n.start()
    for n in nodes[1:]:
        n.join([nodes[0].address])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all(sum(m.liveness is Liveness.ALIVE for m in n.members()) == size for n in nodes):
            return nodes, regs
        time.sleep(0.05)
    raise SystemExit("cluster did not converge")


def detection(runs: int) -> None:
    for size in (3, 5):
        figures = []
        for run in range(runs):
            nodes, _ = cluster(size, f"d{size}r{run}n")
            time.sleep(3)
            victim, rest = nodes[-1], nodes[:-1]
            name = victim.settings.name
            t0 = time.monotonic()
            victim.stop(leave=False)
            suspect = None
            while True:
                seen = [n.view.get(name) for n in rest]
                states = [m.liveness if m else None for m in seen]
                if suspect is None and Liveness.SUSPECT in states:
                    suspect = time.monotonic() - t0
                if all(s is Liveness.DEAD for s in states):
                    break
                time.sleep(0.02)
            figures.append(
                f"suspect {suspect or 0:.1f} s, dead everywhere {time.monotonic() - t0:.1f} s"
            )
            for n in rest:
                n.stop(leave=False)
        print(f"{size} members, a member's sockets closed:", "; ".join(figures))


def ack_quantiles(reg: CollectorRegistry) -> str:
    buckets = [
        (float(s.labels["le"]), s.value)
        for m in reg.collect()
        if m.name == "shoal_cluster_probe_ack_seconds"
        for s in m.samples
        if s.name.endswith("_bucket")
    ]
    total = buckets[-1][1]
    q = [next(le for le, v in buckets if v >= f * total) for f in (0.5, 0.99)]
    return f"{int(total)} acks, p50 <= {q[0] * 1e3:g} ms, p99 <= {q[1] * 1e3:g} ms"


def ack_latency(seconds: float) -> None:
    for spinners in (0, 2):
        nodes, regs = cluster(3, f"a{spinners}n")
        stop = threading.Event()

        def spin(stop: threading.Event = stop) -> None:
            x = 0
            while not stop.is_set():
                for i in range(10_000):
                    x += i * i

        threads = [threading.Thread(target=spin, daemon=True) for _ in range(spinners)]
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        print(
            f"ack latency, {spinners} CPU-bound threads in the process:",
            "; ".join(ack_quantiles(r) for r in regs),
        )
        for n in nodes:
            n.stop(leave=False)


LOCK = "/tmp/shoal-loadtest.lock"
HEAVY_HOSTS = ("127.0.7.2", "127.0.7.3", "127.0.7.4")  # the loaded agent, then two idle peers


def histogram(text: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts of one histogram (summed over label sets), by upper bound."""
    out: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            le = line.split('le="')[1].split('"')[0]
            bound = float("inf") if le == "+Inf" else float(le)
            out[bound] = out.get(bound, 0.0) + float(line.split()[-1])
    return out


def quantiles(before: dict[float, float], after: dict[float, float]) -> str:
    """p50 and p99 (bucket upper bounds) of what a histogram observed between two reads."""
    delta = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = delta[-1][1] if delta else 0.0
    if not total:
        return "none"
    q = [next(le for le, c in delta if c >= f * total) for f in (0.5, 0.99)]
    return f"n={total:.0f} p50<={q[0] * 1e3:g}ms p99<={q[1] * 1e3:g}ms"


def heavy_phase(work: Path, job: Job, clustered: bool, warmup: float, window: float) -> str:
    """One phase: start the agents, wait ``warmup``, measure for ``window``, stop them."""
    shoal = Shoal()
    ports = [free_port(h) for h in HEAVY_HOSTS]
    join = ",".join(f"{h}:{p}" for h, p in zip(HEAVY_HOSTS, ports, strict=True))
    loaded_cfg = work / "loaded.alloy"
    loaded_cfg.write_text(shoal_config(job))
    idle_cfg = work / "idle.alloy"
    idle_cfg.write_text(f'prometheus.remote_write "sink" {{\n  endpoint {{\n    url = "{job.sink_url}"\n'
                        "  }\n}\n")
    procs: list[Proc] = []
    for i in range(len(HEAVY_HOSTS) if clustered else 1):
        flags = [f"--server.http.listen-addr={HEAVY_HOSTS[i]}:{ports[i]}",
                 f"--storage.path={work / f'data-{clustered}-{i}'}", "--config.watch-interval=0"]
        if clustered:
            flags += ["--cluster.enabled", f"--cluster.node-name=agent{i}",
                      f"--cluster.join-addresses={join}", "--cluster.name=bench"]
        cfg = loaded_cfg if i == 0 else idle_cfg
        p = spawn([*shoal.exe, "run", *flags, str(cfg)], work, f"agent{i}-{clustered}",
                  cpu=1 if i == 0 else 0)
        p.url = f"http://{HEAVY_HOSTS[i]}:{ports[i]}"
        procs.append(p)
    try:
        for p in procs:
            wait_http(p.url + "/-/ready", p)
        time.sleep(warmup)
        texts0 = [measure.fetch_text(p.url + "/metrics") for p in procs]
        busy0, self0 = measure.machine_busy_seconds(), measure.self_cpu_seconds()
        cpu0 = [sum(measure.cpu_seconds(x) for x in measure.process_tree(p.pid)) for p in procs]
        t0 = time.monotonic()
        rss: list[int] = []
        while time.monotonic() - t0 < window:
            rss.append(sum(measure.rss_bytes(x) for x in measure.process_tree(procs[0].pid)))
            time.sleep(1.0)
        wall = time.monotonic() - t0
        cpu1 = [sum(measure.cpu_seconds(x) for x in measure.process_tree(p.pid)) for p in procs]
        busy1, self1 = measure.machine_busy_seconds(), measure.self_cpu_seconds()
        texts1 = [measure.fetch_text(p.url + "/metrics") for p in procs]
    finally:
        for p in procs:
            p.stop()
    scraped = [shoal.scraped(measure.parse_metrics(t)) or 0.0 for t in (texts0[0], texts1[0])]
    agents_cpu = sum(b - a for a, b in zip(cpu0, cpu1, strict=True))
    others = max(0.0, (busy1 - busy0) - agents_cpu - (self1 - self0)) / wall  # nginx included
    def q(name: str, i: int = 0) -> str:
        return quantiles(histogram(texts0[i], name), histogram(texts1[i], name))

    line = (f"clustering {'on ' if clustered else 'off'}: loaded agent CPU "
            f"{(cpu1[0] - cpu0[0]) / wall:.3f} cores, RSS median {statistics.median(rss) / 2**20:.0f} MiB, "
            f"{(scraped[1] - scraped[0]) / wall:,.0f} samples/s scraped "
            f"({(cpu1[0] - cpu0[0]) / max(1.0, scraped[1] - scraped[0]) * 1e6:.2f} µs CPU each), "
            f"loop lag {q('shoal_event_loop_lag_seconds')}; "
            f"other processes {others:.2f} cores (nginx included), load {os.getloadavg()[0]:.1f}")
    if clustered:
        ack = "shoal_cluster_probe_ack_seconds"
        line += (f"; acks the loaded agent measured: {q(ack)}"
                 + "".join(f"; peer{i} probing: {q(ack, i)}" for i in range(1, len(procs)))
                 + f"; idle peers' CPU {sum(cpu1[i] - cpu0[i] for i in range(1, len(procs))) / wall:.3f} cores")
    return line


def heavy(warmup: float, window: float, rounds: int) -> None:
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        work = Path(tempfile.mkdtemp(prefix="shoal-bench-cluster-"))
        try:
            payloads = write_payloads(work / "payloads", series=1_000, families=10)
            addrs = nginx.target_addresses(200)
            port, status_port, sink_port = free_port(addrs[0]), free_port(), free_port()
            targets = nginx.start(work / "targets", nginx.targets_conf(
                work / "targets", payloads, addrs, port, 1.0, status_port), "nginx-targets", cpu=0)
            wait_http(f"http://{addrs[-1]}:{port}/metrics", targets)
            sink = nginx.start(work / "sink", nginx.sink_conf(work / "sink", sink_port), "nginx-sink", cpu=0)
            wait_http(f"http://127.0.0.1:{sink_port}/status", sink)
            job = Job([f"{a}:{port}" for a in addrs], 1.0, f"http://127.0.0.1:{sink_port}/api/v1/write")
            for _ in range(rounds):
                for clustered in (False, True):
                    print(heavy_phase(work, job, clustered, warmup, window), flush=True)
        finally:
            stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--spin", type=float, default=20.0, help="seconds of each ack-latency run")
    parser.add_argument(
        "--switch-interval", type=float, help="sys.setswitchinterval for the run (default 5 ms)"
    )
    parser.add_argument("--heavy", action="store_true", help="clustering's cost under heavy load")
    parser.add_argument("--warmup", type=float, default=20.0, help="--heavy: seconds before a window")
    parser.add_argument("--window", type=float, default=60.0, help="--heavy: seconds measured")
    parser.add_argument("--rounds", type=int, default=1, help="--heavy: off/on pairs")
    args = parser.parse_args()
    if args.heavy:
        heavy(args.warmup, args.window, args.rounds)
        return
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    ring_figures()
    detection(args.runs)
    ack_latency(args.spin)


if __name__ == "__main__":
    main()
