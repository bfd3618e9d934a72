"""Realistic exposition payloads for the benchmark targets.

Agents are only honestly compared on payloads that look like what they meet in
a cluster: several metric families per target, 4-8 labels a series, counters,
gauges and histograms with ten buckets, HELP/TYPE lines, and values that change
between scrapes (an agent that caches a whole unchanged payload would otherwise
look unrealistically cheap). Values change by serving one of ``VARIANTS``
pre-generated files chosen by the clock (see nginx.py), so no generator process
competes with the targets for the CPU during a run.

Payload files are shared by targets of the same "family" (the way 200 copies of
one exporter serve the same metric names): series stay unique because every
agent adds ``instance`` and ``job`` itself.
"""

from __future__ import annotations

import gzip
import random
from dataclasses import dataclass
from pathlib import Path

VARIANTS = 10
BUCKETS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf")
HISTOGRAM_LINES = len(BUCKETS) + 2  # buckets, _sum, _count

ROUTES = (
    "/",
    "/api/v1/items",
    "/api/v1/items/:id",
    "/api/v1/users",
    "/api/v1/users/:id",
    "/api/v1/orders",
    "/api/v1/orders/:id",
    "/login",
    "/logout",
    "/healthz",
)
METHODS = ("GET", "POST", "PUT", "DELETE")
STATUSES = ("200", "201", "404", "500")
PEERS = ("billing", "inventory", "search", "auth", "notifications")
RPCS = ("Get", "List", "Create", "Update", "Delete", "Watch")
GRPC_CODES = ("OK", "Unavailable", "DeadlineExceeded")
CACHES = ("sessions", "users", "items", "prices", "tokens", "routes", "flags", "geo")


@dataclass(frozen=True)
class PayloadSet:
    """Where the payload files are and what each holds."""

    root: Path
    families: int
    variants: int
    series: int  # sample lines per payload (identical for every file)

    def path(self, family: int, variant: int) -> Path:
        return self.root / f"f{family}" / f"v{variant}.prom"


class _Builder:
    """Accumulates exposition lines up to an exact series budget."""

    def __init__(self, budget: int, variant: int, rng: random.Random) -> None:
        self.budget = budget
        self.variant = variant
        self.rng = rng
        self.lines: list[str] = []
        self.series = 0

    def room(self, n: int) -> bool:
        return self.series + n <= self.budget

    def header(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: str, value: str) -> None:
        self.lines.append(f"{name}{{{labels}}} {value}")
        self.series += 1

    def counter_value(self, seed: int) -> str:
        # Per-series base and rate are fixed; the variant advances the counter.
        base = (seed * 7919) % 100_000
        rate = 1 + seed % 37
        return str(base + rate * (self.variant + 1) * 10)

    def gauge_value(self) -> str:
        return f"{self.rng.uniform(0, 1000):.6g}"

    def histogram(self, name: str, labels: str, seed: int) -> None:
        cumulative = 0
        for i, le in enumerate(BUCKETS):
            cumulative += (seed % 13 + i + 1) * (self.variant + 1)
            self.sample(f"{name}_bucket", f'{labels},le="{le}"', str(cumulative))
        total = cumulative * 0.137 + self.rng.random()
        self.sample(f"{name}_sum", labels, f"{total:.9g}")
        self.sample(f"{name}_count", labels, str(cumulative))


def render_payload(series: int, family: int, variant: int) -> str:
    """One target's exposition text with exactly ``series`` sample lines."""
    rng = random.Random(family * 1000 + variant)
    b = _Builder(series, variant, rng)
    base = f'namespace="shop-{family % 7}",service="svc-{family}",pod="svc-{family}-7d9f8b6c5-x{family:03d}q"'
    seed = 0

    name = "http_server_requests_total"
    b.header(name, "counter", "Requests handled, by method, route and status.")
    for method in METHODS:
        for route in ROUTES:
            for status in STATUSES:
                if not b.room(1):
                    break
                seed += 1
                b.sample(
                    name,
                    f'{base},method="{method}",route="{route}",status="{status}"',
                    b.counter_value(seed),
                )

    name = "http_server_request_duration_seconds"
    b.header(name, "histogram", "Request latency.")
    for method in METHODS[:2]:
        for route in ROUTES:
            if b.room(HISTOGRAM_LINES):
                seed += 1
                b.histogram(name, f'{base},method="{method}",route="{route}"', seed)

    name = "rpc_client_calls_total"
    b.header(name, "counter", "Outgoing RPCs by peer, method and code.")
    for peer in PEERS:
        for rpc in RPCS:
            for code in GRPC_CODES:
                if b.room(1):
                    seed += 1
                    b.sample(
                        name,
                        f'{base},peer_service="{peer}",rpc_method="{rpc}",grpc_code="{code}"',
                        b.counter_value(seed),
                    )

    name = "rpc_client_duration_seconds"
    b.header(name, "histogram", "Outgoing RPC latency.")
    for peer in PEERS:
        for rpc in RPCS[:3]:
            if b.room(HISTOGRAM_LINES):
                seed += 1
                b.histogram(name, f'{base},peer_service="{peer}",rpc_method="{rpc}"', seed)

    name = "queue_messages"
    b.header(name, "gauge", "Messages waiting, by queue and partition.")
    for q in range(10):
        for part in range(8):
            if b.room(1):
                b.sample(name, f'{base},queue="orders-{q}",partition="{part}"', b.gauge_value())

    name = "cache_operations_total"
    b.header(name, "counter", "Cache operations by cache, operation and result.")
    for cache in CACHES:
        for op in ("get", "set", "delete"):
            for result in ("hit", "miss"):
                if b.room(1):
                    seed += 1
                    b.sample(
                        name,
                        f'{base},cache="{cache}",op="{op}",result="{result}"',
                        b.counter_value(seed),
                    )

    name = "process_resident_memory_bytes"
    b.header(name, "gauge", "Resident memory size in bytes.")
    if b.room(1):
        b.sample(name, f'{base},container="app"', str(int(rng.uniform(1e8, 4e8))))
    name = "process_cpu_seconds_total"
    b.header(name, "counter", "Total user and system CPU time spent in seconds.")
    if b.room(1):
        b.sample(name, f'{base},container="app"', f"{1000 + variant * 1.37:.2f}")

    # Fill the rest of the budget exactly with a per-worker gauge family.
    name = "worker_jobs_in_flight"
    b.header(name, "gauge", "Jobs being processed, by worker.")
    w = 0
    while b.room(1):
        b.sample(name, f'{base},worker="w{w}",pool="pool-{w % 4}"', b.gauge_value())
        w += 1
    b.lines.append("")
    return "\n".join(b.lines)


def write_payloads(
    root: Path, series: int, families: int, variants: int = VARIANTS, compress: bool = True
) -> PayloadSet:
    """Write every family x variant payload (and a .gz beside it for gzip_static)."""
    root.mkdir(parents=True, exist_ok=True)
    out = PayloadSet(root=root, families=families, variants=variants, series=series)
    for f in range(families):
        (root / f"f{f}").mkdir(exist_ok=True)
        for v in range(variants):
            data = render_payload(series, f, v).encode()
            path = out.path(f, v)
            path.write_bytes(data)
            if compress:
                path.with_suffix(".prom.gz").write_bytes(gzip.compress(data, compresslevel=6))
    return out


def count_samples(text: str) -> int:
    """Sample lines in an exposition payload (not comments, not blank)."""
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))
