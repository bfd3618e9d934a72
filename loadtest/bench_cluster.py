"""Figures for docs/clustering.md: ring balance and lookup cost, time to declare a member
dead with the default settings, and probe-to-ack latency idle and with busy threads.

All nodes run in this one process on 127.0.0.x loopback addresses, each in its own
thread, as in tests/cluster; the figures for real agents under load come from the
cluster harness (issue 13).

    python loadtest/bench_cluster.py [--runs 3] [--spin 20] [--switch-interval 0.001]
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import structlog
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.cluster import Liveness, Node, Ring, Settings  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--spin", type=float, default=20.0, help="seconds of each ack-latency run")
    parser.add_argument(
        "--switch-interval", type=float, help="sys.setswitchinterval for the run (default 5 ms)"
    )
    args = parser.parse_args()
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    ring_figures()
    detection(args.runs)
    ack_latency(args.spin)


if __name__ == "__main__":
    main()
