"""Scrape hot-path benchmark: parse + relabel + append cost per sample, cache memory, loop stalls.

Runs the real ScrapeLoop.ingest (text parser, scrape cache, target labels,
metric relabeling, staleness, batch building) on in-memory bodies, so the
figures exclude HTTP. Payloads: node_exporter's real /metrics (3,027 samples)
and a 10,000-series kube-style payload (the 2,000-series synthetic payload
from the conformance data, replicated 5x with a distinguishing label).
CPU time (process_time) is reported, best of N rounds, because wall time on
a shared machine mostly measures the neighbours.

    .venv/bin/python loadtest/bench_scrape.py [--rounds 5] [--big-mb 20]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.protobuf, loadtest.harness

from agent import labels as L  # noqa: E402
from agent.relabel import Rule  # noqa: E402
from agent.scrape.config import ScrapeConfig  # noqa: E402
from agent.scrape.loop import ScrapeLoop  # noqa: E402
from agent.scrape.target import Target, populate_labels  # noqa: E402
from agent.scrape.textparse import parse_text  # noqa: E402
from agent.storage import SampleBatch  # noqa: E402
from tests.protobuf import metrics_pb as pb  # noqa: E402

PAYLOADS = Path(__file__).resolve().parent.parent.parent / "shared" / "conformance" / "payloads"
CTYPE = "text/plain; version=0.0.4"
RULES = [
    Rule(source_labels=["__name__"], regex="go_gc_.*|debug_.*", action="drop"),
    Rule(source_labels=["namespace"], regex="(.*)-prod", target_label="env", replacement="prod"),
]


class Null:
    def append(self, batch: SampleBatch) -> None:
        pass


def replicate(path: Path, times: int) -> bytes:
    lines = path.read_bytes().split(b"\n")
    out: list[bytes] = []
    for i in range(times):
        for ln in lines:
            if ln and not ln.startswith(b"#"):
                if b"{" in ln:
                    out.append(ln.replace(b"{", b'{replica="%d",' % i, 1))
                else:
                    k, _, rest = ln.partition(b" ")
                    out.append(k + b'{replica="%d"} ' % i + rest)
            elif i == 0 and ln:
                out.append(ln)
    return b"\n".join(out) + b"\n"


def make_loop(rules: list[Rule], **kw: object) -> ScrapeLoop:
    cfg = ScrapeConfig(job_name="bench", metric_relabel_rules=rules, **kw)  # type: ignore[arg-type]
    disc = L.from_dict({"__address__": "10.0.0.1:9100"})
    final = populate_labels(disc, cfg)
    assert final is not None
    return ScrapeLoop(Target(disc, final, cfg.params), cfg, Null(), seed=0)


async def ingest_cpu(
    loop: ScrapeLoop, body: bytes, ts: int, ctype: str = CTYPE
) -> tuple[float, int]:
    batch = SampleBatch()
    t = time.process_time()
    err, _, added, _ = await loop.ingest(body, ctype, ts, batch)
    loop.appendable.append(batch)
    dt = time.process_time() - t
    assert err is None, err
    return dt, added


_PB_TYPES = {"counter": pb.COUNTER, "gauge": pb.GAUGE, "untyped": pb.UNTYPED,
             "unknown": pb.UNTYPED, "summary": pb.SUMMARY, "histogram": pb.HISTOGRAM}


def to_protobuf(text: bytes, native_every: int = 0) -> bytes:
    """The same exposition as client_model protobuf (what a Go exporter would serve).

    Samples are grouped into families by their TYPE; with ``native_every`` = n,
    every n-th histogram metric also carries native buckets (schema 3, 12 buckets).
    """
    exp = parse_text(text)
    fams: dict[str, object] = {}
    metrics: dict[tuple, object] = {}
    nth = 0
    for s in exp.samples:
        d = dict(s.labels)
        name = d.pop("__name__")
        fam_name, kind, suffix = name, "untyped", ""
        for suf in ("_bucket", "_count", "_sum", ""):
            base = name[: len(name) - len(suf)] if suf else name
            md = exp.metadata.get(base)
            if md is not None and (not suf or md.type in ("histogram", "summary")):
                fam_name, kind, suffix = base, md.type, suf
                break
        mf = fams.get(fam_name)
        if mf is None:
            mf = fams[fam_name] = pb.MetricFamily(name=fam_name, type=_PB_TYPES[kind])
            md = exp.metadata.get(fam_name)
            if md is not None and md.help:
                mf.help = md.help
        le, q = d.pop("le", None), d.pop("quantile", None) if kind == "summary" else None
        key = (fam_name, tuple(sorted(d.items())))
        m = metrics.get(key)
        if m is None:
            m = metrics[key] = mf.metric.add()
            for k, v in sorted(d.items()):
                m.label.add(name=k, value=v)
            if kind == "histogram" and native_every:
                nth += 1
                if nth % native_every == 0:
                    h = m.histogram
                    h.schema = 3
                    h.zero_threshold = 2.0**-128
                    h.positive_span.add(offset=-5, length=8)
                    h.positive_span.add(offset=3, length=4)
                    h.positive_delta.extend([1, 2, 0, -1, 3, 1, -2, 0, 1, 1, -1, 0])
        v = s.value
        if kind == "counter":
            m.counter.value = v
            # client_golang exposes created timestamps on counters
            m.counter.created_timestamp.seconds = 1_700_000_000 + len(metrics)
            m.counter.created_timestamp.nanos = (len(metrics) * 7919) % 1_000_000_000
        elif kind == "gauge":
            m.gauge.value = v
        elif kind in ("untyped", "unknown"):
            m.untyped.value = v
        elif kind == "summary":
            if suffix == "_count":
                m.summary.sample_count = int(v)
            elif suffix == "_sum":
                m.summary.sample_sum = v
            else:
                m.summary.quantile.add(quantile=float(q or 0), value=v)
        else:
            h = m.histogram
            if suffix == "_count":
                h.sample_count = int(v)
            elif suffix == "_sum":
                h.sample_sum = v
            elif le is not None and le != "+Inf":
                h.bucket.add(upper_bound=float(le), cumulative_count=int(v))
    for m in metrics.values():
        h = m.histogram
        if h.positive_delta:
            acc = total = 0
            for dlt in h.positive_delta:
                acc += dlt
                total += acc
            h.sample_count = total
    return pb.encode_delimited(fams.values())


async def bench_payload(
    name: str,
    first: bytes,
    again: bytes,
    rounds: int,
    rules: list[Rule],
    ctype: str = CTYPE,
    **cfg: object,
) -> None:
    miss, hit = [], []
    n = 0
    for _ in range(rounds):
        loop = make_loop(rules, **cfg)
        dt, n = await ingest_cpu(loop, first, 1000, ctype)
        miss.append(dt)
        for k in range(3):
            dt, _ = await ingest_cpu(loop, again if k % 2 == 0 else first, 2000 + k, ctype)
            hit.append(dt)
    print(
        f"{name:<34} {n:>7} samples  first scrape {min(miss) / n * 1e6:6.2f} us/sample"
        f"   repeated (cache hit) {min(hit) / n * 1e6:5.2f} us/sample"
    )


async def bench_memory(body: bytes) -> None:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    loop = make_loop([])
    await ingest_cpu(loop, body, 1000)
    await ingest_cpu(loop, body, 2000)  # prev set and interned metadata settle
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    used = sum(s.size_diff for s in after.compare_to(before, "filename"))
    n = len(loop.cache.entries)
    print(
        f"memory per cached series           {used / n:7.0f} bytes  ({n} series, {used / 2**20:.1f} MiB)"
    )


async def bench_big(mb: int) -> None:
    """A ~``mb`` MB body: longest event-loop stall, chunked in-loop parse vs a worker thread."""
    base = replicate(PAYLOADS / "synthetic-kube-2000.prom", 1)
    times = max(1, mb * 2**20 // len(base))
    body = replicate(PAYLOADS / "synthetic-kube-2000.prom", times)

    async def with_ticker(coro_factory) -> tuple[float, float]:  # noqa: ANN001
        stalls: list[float] = []
        stop = False

        async def ticker() -> None:
            last = time.perf_counter()
            while not stop:
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                stalls.append(now - last)
                last = now

        t = asyncio.get_running_loop().create_task(ticker())
        start = time.perf_counter()
        await coro_factory()
        total = time.perf_counter() - start
        stop = True
        await t
        return total, max(stalls) if stalls else total

    import agent.scrape.loop as loopmod

    default = loopmod.THREAD_BYTES
    for label in ("first", "repeat"):
        for mode, threshold in (("chunked in loop", 1 << 62), ("worker thread", default)):
            loopmod.THREAD_BYTES = threshold
            loop = make_loop([])
            if label == "repeat":
                await ingest_cpu(loop, body, 1)

            async def run(loop: ScrapeLoop = loop) -> None:
                batch = SampleBatch()
                err, *_ = await loop.ingest(body, CTYPE, 5, batch)
                assert err is None, err

            total, stall = await with_ticker(run)
            print(
                f"{len(body) / 2**20:5.1f} MB body, {label:<6} scrape, {mode:<15}: "
                f"total {total * 1000:7.1f} ms, longest loop stall {stall * 1000:5.1f} ms"
            )
    loopmod.THREAD_BYTES = default


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--big-mb", type=int, default=20)
    ap.add_argument("--only-text", action="store_true", help="skip protobuf, memory and big-body cases")
    args = ap.parse_args()
    node = (PAYLOADS / "node_exporter_linux_e2e-output.txt").read_bytes()
    kube = replicate(PAYLOADS / "synthetic-kube-2000.prom", 5)
    kube_next = replicate(PAYLOADS / "synthetic-kube-2000.next.prom", 5)
    await bench_payload("node_exporter (no relabel)", node, node, args.rounds, [])
    await bench_payload("node_exporter (2 relabel rules)", node, node, args.rounds, RULES)
    await bench_payload("kube 10k series (no relabel)", kube, kube_next, args.rounds, [])
    await bench_payload("kube 10k series (2 relabel rules)", kube, kube_next, args.rounds, RULES)
    from loadtest.harness.targets import render_payload

    lt, lt_next = render_payload(1000, 0, 0).encode(), render_payload(1000, 0, 1).encode()
    await bench_payload("loadtest payload 1k (no relabel)", lt, lt_next, args.rounds * 20, [])
    if args.only_text:
        return
    pb_node = to_protobuf(node)
    pb_kube, pb_kube_next = to_protobuf(kube), to_protobuf(kube_next)
    pbt = pb.CONTENT_TYPE
    await bench_payload("protobuf node_exporter (no relabel)", pb_node, pb_node, args.rounds, [], pbt)
    await bench_payload("protobuf kube 10k (no relabel)", pb_kube, pb_kube_next, args.rounds, [], pbt)
    await bench_payload("protobuf kube 10k (2 relabel rules)", pb_kube, pb_kube_next, args.rounds,
                        RULES, pbt)
    nh, nh_next = to_protobuf(kube, native_every=4), to_protobuf(kube_next, native_every=4)
    await bench_payload("protobuf kube 10k, 1/4 hist native", nh, nh_next, args.rounds, [], pbt,
                        scrape_native_histograms=True)
    await bench_memory(kube)
    if args.big_mb:
        await bench_big(args.big_mb)


if __name__ == "__main__":
    asyncio.run(main())
