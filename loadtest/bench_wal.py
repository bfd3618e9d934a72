"""Micro-benchmark of the remote-write hot path on one core.

Measures, for scrape-shaped batches (N series, one timestamp per batch):
- WAL append: samples/s through RemoteWrite.append's WAL write (dict look-up
  per sample, column packing, snappy, one write() per batch), and bytes on
  disk per sample;
- dispatch + encode: ns/sample through an endpoint queue's reader (route to
  shards) and the RW 1.0 encoding of the cut batches (done at send time) once every series is known to
  the endpoint, and apart from it the first record's cost per series
  (resolving and encoding its labels, once per series and endpoint);
- compress: snappy of the encoded request bodies, ns per sample.

- rw2 encode: the same batches encoded as Remote-Write 2.0 requests.
- native histograms (``--histograms``, default 500 series): WAL append, bytes
  on disk, and dispatch + RW 1.0 encode, per histogram sample (a 20-bucket
  integer histogram, as a typical latency histogram).

Times are CPU time of this process (time.process_time), so other work on a
shared machine does not inflate them.

``--no-external``: the endpoint has no external labels, so it sends the WAL's
labels unchanged and reads its prefixes from the WAL's table
(agent/remote/series.py ``WalPrefixes``), the common case.

Usage: python loadtest/bench_wal.py [--series 5000] [--batches 200] [--no-external]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from agent.remote import EndpointConfig, QueueConfig
from agent.remote.codec import compress
from agent.remote.codec_v2 import V2
from agent.remote.position import PositionStore
from agent.remote.queue import EndpointQueue
from agent.storage import Histogram, SampleBatch
from agent.wal import WAL, Cursor
from agent.wal import record as walrec


def make_batches(n_series: int, n_batches: int) -> list[SampleBatch]:
    labels = [
        (
            ("__name__", f"node_metric_{i % 300}_total"),
            ("cpu", str(i % 16)),
            ("instance", "10.0.0.1:9100"),
            ("job", "node"),
            ("mode", "idle"),
            ("series", str(i)),
        )
        for i in range(n_series)
    ]
    t0 = int(time.time() * 1000)
    out = []
    for b in range(n_batches):
        out.append(
            SampleBatch(  # a fresh list of the same tuples, as each scrape hands on
                list(labels),
                [t0 + b * 15000] * n_series,
                [float(b * 7 + i) for i in range(n_series)],
            )
        )
    return out


def bench(n_series: int, n_batches: int, shards: int = 8, external: bool = True) -> dict[str, float]:
    batches = make_batches(n_series, n_batches)
    total = n_series * n_batches
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "wal"
        wal = WAL(d)
        wal.open()
        wal.append(
            batches[0].labels, batches[0].timestamps, batches[0].values
        )  # series records: once
        t = time.process_time()
        for b in batches[1:]:
            wal.append(b.labels, b.timestamps, b.values)
        append_s = time.process_time() - t
        wal.sync()
        size = sum(p.stat().st_size for p in d.iterdir() if p.is_file())

        async def dispatch() -> tuple[float, float, int, float]:
            q = QueueConfig(min_shards=shards, max_samples_per_send=2000, capacity=10**9)
            eq = EndpointQueue(
                EndpointConfig(name="b", url="http://127.0.0.1:9/none", queue=q),
                wal,
                PositionStore(Path(tmp) / "pos"),
                {"cluster": "bench"} if external else {},  # without: the WAL's labels sent unchanged
            )
            # Build the shards without starting senders: we measure the reader side only.
            await eq.start((0, 0))
            for s in eq.shards:
                s.stopping = True
            for t_ in eq._tasks + eq._shard_tasks:
                t_.cancel()
            cur = Cursor(d, 0, 0)
            recs = []
            while True:
                r = cur.read(1 << 22)
                if not r.records:
                    break
                recs.extend(x for x in r.records if x.type == walrec.SAMPLES)
            # The first record resolves each series' labels for this endpoint (once per series
            # and endpoint): timed apart, as the steady state never pays it.
            t = time.process_time()
            eq.watcher.hand_over(recs[0])
            first = time.process_time() - t
            t = time.process_time()
            for rec in recs[1:]:
                eq.watcher.hand_over(rec)
            # RW 1.0 bodies are built when a batch is sent (agent/remote/fastpath.encode_part):
            # that is part of the figure too.
            bodies = [eq._encode(b)[0] for s in eq.shards for b in s.ready]
            disp = time.process_time() - t
            t = time.process_time()
            out = sum(len(compress(b)) for b in bodies)
            comp = time.process_time() - t
            # Remote-Write 2.0 encodes at send time from the batches' columns.
            eq.proto = V2
            batches = [b for s in eq.shards for b in s.ready]
            t = time.process_time()
            for b in batches:
                eq._encode(b)
            v2 = time.process_time() - t
            await eq.client.aclose()
            return first, disp, comp, out, v2

        first_s, disp_s, comp_s, wire, v2_s = asyncio.run(dispatch())
        wal.close()
    sent = total - n_series  # the first batch is excluded from the append timing only
    return {
        "samples": total,
        "append_samples_per_s": sent / append_s,
        "append_ns_per_sample": append_s / sent * 1e9,
        "wal_bytes_per_sample": size / total,
        "series_first_dispatch_us_per_series": first_s / n_series * 1e6,
        "dispatch_encode_ns_per_sample": disp_s / sent * 1e9,
        "snappy_request_ns_per_sample": comp_s / total * 1e9,
        "rw2_encode_ns_per_sample": v2_s / total * 1e9,
        "wire_bytes_per_sample": wire / total,
        "wal_to_wire_samples_per_s": total / (append_s * total / sent + disp_s * total / sent + comp_s),
    }


def bench_histograms(n_series: int, n_batches: int) -> dict[str, float]:
    """Per native histogram sample: WAL append, bytes on disk, dispatch + RW 1.0 encode."""
    labels = [(("__name__", "http_request_duration_seconds"), ("handler", f"/api/{i}"), ("job", "app"))
              for i in range(n_series)]
    t0 = int(time.time() * 1000)

    def hist(i: int, b: int) -> Histogram:  # every series and scrape different, as real ones are
        return Histogram(count=float(100 + b + i), sum=12.5 + b * 0.37 + i, schema=3, zero_threshold=1e-128,
                         zero_count=1.0, positive_spans=((-5, 12), (3, 8)),
                         positive_counts=tuple(float(1 + (j * 7 + b * 3 + i) % 13) for j in range(20)))

    hists = [[hist(i, b) for i in range(n_series)] for b in range(n_batches)]
    total = n_series * n_batches
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "wal"
        wal = WAL(d)
        wal.open()
        t = time.process_time()
        for b in range(n_batches):
            hb = hists[b]
            wal.append([], [], [], None, [(lb, t0 + b * 15000, hb[i]) for i, lb in enumerate(labels)])
        append_s = time.process_time() - t
        wal.sync()
        size = sum(p.stat().st_size for p in d.iterdir() if p.is_file())

        async def dispatch() -> float:
            q = QueueConfig(min_shards=8, max_samples_per_send=2000, capacity=10**9)
            eq = EndpointQueue(
                EndpointConfig(name="h", url="http://127.0.0.1:9/none", queue=q, send_native_histograms=True),
                wal, PositionStore(Path(tmp) / "pos"), {"cluster": "bench"},
            )
            await eq.start((0, 0))
            for s in eq.shards:
                s.stopping = True
            for t_ in eq._tasks + eq._shard_tasks:
                t_.cancel()
            cur = Cursor(d, 0, 0)
            recs = []
            while True:
                r = cur.read(1 << 22)
                if not r.records:
                    break
                recs.extend(x for x in r.records if x.type == walrec.HISTOGRAMS)
            t = time.process_time()
            for rec in recs:
                eq.watcher.hand_over(rec)
            disp = time.process_time() - t
            await eq.client.aclose()
            return disp

        disp_s = asyncio.run(dispatch())
        wal.close()
    return {
        "histograms": total,
        "hist_append_ns_per_histogram": append_s / total * 1e9,
        "hist_wal_bytes_per_histogram": size / total,
        "hist_dispatch_encode_ns_per_histogram": disp_s / total * 1e9,
    }


def bench_memory(n_series: int) -> dict[str, float]:
    """Bytes per series held by the WAL's series tables and by one endpoint's series cache (tracemalloc).

    The label tuples are made before measuring: in a running agent they belong to the
    scrape cache, and the WAL keeps the very same objects (it stores the tuple it is given).
    """
    import gc
    import tracemalloc

    batches = make_batches(n_series, 2)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "wal"
        wal = WAL(d)
        wal.open()
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        wal.append(batches[0].labels, batches[0].timestamps, batches[0].values)
        gc.collect()
        after_wal = tracemalloc.get_traced_memory()[0]

        async def endpoint() -> tuple[int, int]:
            q = QueueConfig(min_shards=1, max_samples_per_send=2000, capacity=10**9)
            eq = EndpointQueue(EndpointConfig(name="m", url="http://127.0.0.1:9/none", queue=q), wal,
                               PositionStore(Path(tmp) / "pos"), {"cluster": "bench"})
            await eq.start((0, 0))
            for s in eq.shards:
                s.stopping = True
            for t_ in eq._tasks + eq._shard_tasks:
                t_.cancel()
            wal.append(batches[1].labels, batches[1].timestamps, batches[1].values)
            cur = Cursor(d, 0, 0)
            recs = [x for x in cur.read(1 << 26).records if x.type == walrec.SAMPLES]
            gc.collect()
            m0 = tracemalloc.get_traced_memory()[0]
            eq.watcher.hand_over(recs[0])
            for s in eq.shards:  # sent and acknowledged: only the per-series cache stays
                s.ready.clear()
                s.cut((0, 0, 0))
                s.ready.clear()
            gc.collect()
            cache = tracemalloc.get_traced_memory()[0] - m0
            m1 = tracemalloc.get_traced_memory()[0]
            eq.watcher.hand_over(recs[1])
            pending = tracemalloc.get_traced_memory()[0] - m1  # one scrape's samples waiting in batches
            await eq.client.aclose()
            return cache, pending

        cache, pending = asyncio.run(endpoint())
        tracemalloc.stop()
        wal.close()
    return {
        "mem_series": n_series,
        "wal_series_tables_bytes_per_series": (after_wal - base) / n_series,
        "endpoint_series_cache_bytes_per_series": cache / n_series,
        "pending_batch_bytes_per_sample": pending / n_series,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=5000)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--memory", type=int, default=100_000, help="series for the tracemalloc figures (0: skip)")
    ap.add_argument("--shards", type=int, default=8, help="queue shards for the dispatch figures")
    ap.add_argument("--histograms", type=int, default=500, help="native histogram series (0: skip)")
    ap.add_argument("--no-external", action="store_true", help="no external labels: the WAL's labels as they are")
    args = ap.parse_args()
    res = bench(args.series, args.batches, args.shards, not args.no_external)
    if args.memory:
        res.update(bench_memory(args.memory))
    if args.histograms:
        res.update(bench_histograms(args.histograms, min(args.batches, 40)))
    for k, v in res.items():
        print(f"{k:34s} {v:,.1f}")


if __name__ == "__main__":
    main()
