"""Memory per active series, by structure, on the load test's own payloads.

The harness (`bash loadtest/run`) reports RSS per series for the whole
process; this says where it goes, so each change to the series tables can be
measured on its own. It builds the seed workload's state in one process:
``--targets`` scrape loops (default 200, the seed workload) over the payloads
of `loadtest/harness/targets.py` (1,000 series each, instance and job added),
a real `RemoteWrite` (WAL in a temporary folder) with one endpoint whose
sends go to a local HTTP server answering 204, and walks through the states
a running agent reaches, measuring after each with tracemalloc:

1. per-target objects: the scrape loops, their targets, configs and HTTP sides;
2. scrape caches: two scrapes of every target (the second settles staleness);
3. WAL series tables: a third scrape appended to the WAL;
4. endpoint series tables: that scrape read, dispatched and sent by the queue;
5. pending samples: one more scrape appended and dispatched, not yet sent;

then prints bytes per series for each, and the largest allocation sites of
what is held at the end. ``--rss`` runs the same steps without tracemalloc
(which adds its own memory) and prints the process's resident set after each.

``--rounds N`` (with ``--rss``) then goes on for N rounds of a scrape of every
target and a full send, printing the resident set after each: the steady
state, where allocator slack shows. ``--trim`` calls glibc's ``malloc_trim(0)``
after each of those rounds and prints what it gave back and how long it took
(whether returning free heap pages would pay: docs/performance.md).

    .venv/bin/python loadtest/bench_memory.py [--targets 200] [--rss [--rounds 8 [--trim]]]
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # loadtest.harness

from agent import labels as L  # noqa: E402
from agent.remote import EndpointConfig, QueueConfig, RemoteWrite, WALOptions  # noqa: E402
from agent.remote.queue import EndpointQueue  # noqa: E402
from agent.scrape.config import ScrapeConfig  # noqa: E402
from agent.scrape.loop import ScrapeLoop  # noqa: E402
from agent.scrape.target import Target, populate_labels  # noqa: E402
from agent.storage import SampleBatch  # noqa: E402
from loadtest.harness.targets import render_payload  # noqa: E402

FAMILIES = 20  # distinct payloads shared by the targets, as in the harness
SERIES = 1000  # series per target
CTYPE = "text/plain; version=0.0.4"


class Null:
    def append(self, batch: SampleBatch) -> None:
        pass


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def sink() -> tuple[web.AppRunner, str]:
    """A remote-write endpoint that answers 204 without decoding, in this process's loop."""

    async def write(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/api/v1/write", write)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/api/v1/write"


def make_loops(n: int, appendable: object) -> list[ScrapeLoop]:
    cfg = ScrapeConfig(job_name="bench", scrape_interval=10.0, scrape_timeout=10.0)
    loops = []
    for i in range(n):
        disc = L.from_dict({"__address__": f"127.1.{i // 250}.{i % 250 + 1}:8080"})
        final = populate_labels(disc, cfg)
        assert final is not None
        loops.append(ScrapeLoop(Target(disc, final, cfg.params), cfg, appendable, seed=i))  # type: ignore[arg-type]
    return loops


async def scrape_all(loops: list[ScrapeLoop], bodies: list[list[bytes]], rnd: int,
                     ts: int) -> None:
    for i, loop in enumerate(loops):
        body = bodies[i % FAMILIES][rnd % len(bodies[0])]
        batch = SampleBatch()
        err, _, _, _ = await loop.ingest(body, CTYPE, ts, batch)
        assert err is None, err
        loop.appendable.append(batch)


class Meter:
    """Readings after each step: tracemalloc's traced bytes, or the resident set."""

    def __init__(self, rss: bool) -> None:
        self.rss = rss
        self.last = 0
        self.rows: list[tuple[str, int]] = []

    def read(self) -> int:
        gc.collect()
        return rss_bytes() if self.rss else tracemalloc.get_traced_memory()[0]

    def start(self) -> None:
        if not self.rss:
            tracemalloc.start(1)
        self.last = self.read()
        self.rows.append(("start (imports, sink, RemoteWrite started)", self.last))

    def step(self, name: str) -> None:
        now = self.read()
        self.rows.append((name, now - self.last))
        self.last = now


async def run(n_targets: int, rss: bool, top: int, rounds: int = 0, trim: bool = False) -> None:
    bodies = [[render_payload(SERIES, f, v).encode() for v in range(3)] for f in range(FAMILIES)]
    series = n_targets * SERIES
    meter = Meter(rss)
    with tempfile.TemporaryDirectory() as tmp:
        runner, url = await sink()
        q = QueueConfig()
        rw = RemoteWrite(Path(tmp) / "rw", [EndpointConfig(name="sink", url=url, queue=q)], {},
                         WALOptions())
        await rw.start()
        meter.start()
        base_snap = None if rss else tracemalloc.take_snapshot()

        loops = make_loops(n_targets, Null())
        meter.step("per-target objects (loops, targets, configs, HTTP sides)")

        t0 = int(time.time() * 1000)
        await scrape_all(loops, bodies, 0, t0)
        await scrape_all(loops, bodies, 1, t0 + 10_000)
        meter.step("scrape caches (two scrapes)")

        for loop in loops:
            loop.appendable = rw
        queue = next(iter(rw.queues.values()))
        await scrape_all(loops, bodies, 2, t0 + 20_000)  # no await in between: the queue has not read
        meter.step("WAL series tables (third scrape appended)")

        await wait_until(lambda: drained(rw, queue), 600)
        meter.step("endpoint series table + routes (third scrape sent)")

        await scrape_all(loops, bodies, 0, t0 + 30_000)
        assert queue.watcher is not None
        while queue.watcher.read_once():
            pass
        meter.step("pending samples (fourth scrape dispatched, not sent)")
        end_snap = None if rss else tracemalloc.take_snapshot()

        await wait_until(lambda: drained(rw, queue), 600)
        if rounds:
            await steady_rounds(loops, bodies, rw, queue, t0 + 40_000, rounds, trim)
        await rw.stop()
        await runner.cleanup()
    unit = "RSS" if rss else "tracemalloc"
    print(f"{n_targets} targets x {SERIES} series = {series:,} series ({unit})")
    print(f"{'step':<58} {'MiB':>8} {'B/series':>9}")
    total = 0
    for name, b in meter.rows:
        if not name.startswith("start"):
            total += b
        print(f"{name:<58} {b / 2**20:8.1f} {b / series:9.0f}")
    print(f"{'series state (all steps)':<58} {total / 2**20:8.1f} {total / series:9.0f}")
    if base_snap is not None and end_snap is not None and top:
        print(f"\nlargest allocation sites held at the end (top {top}):")
        stats = end_snap.compare_to(base_snap, "lineno")
        for st in stats[:top]:
            fr = st.traceback[0]
            name = fr.filename.split("/wt/mem16/")[-1].split("site-packages/")[-1]
            print(f"  {st.size_diff / series:7.0f} B/series  {st.count_diff:>9,} blocks  {name}:{fr.lineno}")
    del loops


async def steady_rounds(loops: list[ScrapeLoop], bodies: list[list[bytes]], rw: RemoteWrite,
                        queue: EndpointQueue, t0: int, rounds: int, trim: bool) -> None:
    """Scrape and send ``rounds`` more times, printing the resident set (and a trim's effect)."""
    malloc_trim = ctypes.CDLL(None).malloc_trim if trim else None
    for rnd in range(rounds):
        await scrape_all(loops, bodies, rnd, t0 + rnd * 10_000)
        await wait_until(lambda: drained(rw, queue), 600)
        gc.collect()
        line = f"steady round {rnd + 1}: {rss_bytes() / 2**20:.1f} MiB"
        if malloc_trim is not None:
            t = time.perf_counter()
            malloc_trim(0)
            took = (time.perf_counter() - t) * 1000
            line += f", after malloc_trim(0) {rss_bytes() / 2**20:.1f} MiB ({took:.1f} ms)"
        print(line, flush=True)


def drained(rw: RemoteWrite, queue: EndpointQueue) -> bool:
    """Everything in the WAL was read, sent and acknowledged."""
    w = queue.watcher
    return w is not None and w.position == rw.wal.head() and queue.pending() == 0 and queue.settled()


async def wait_until(cond: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("the queue did not drain")
        await asyncio.sleep(0.05)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", type=int, default=200)
    ap.add_argument("--rss", action="store_true", help="resident set instead of tracemalloc")
    ap.add_argument("--top", type=int, default=15, help="allocation sites listed (tracemalloc only)")
    ap.add_argument("--rounds", type=int, default=0, help="steady rounds after the steps (with --rss)")
    ap.add_argument("--trim", action="store_true", help="malloc_trim(0) after each steady round (glibc)")
    args = ap.parse_args()
    if args.rounds and not args.rss:
        ap.error("--rounds measures the resident set: add --rss")
    asyncio.run(run(args.targets, args.rss, args.top, args.rounds, args.trim))


if __name__ == "__main__":
    main()
