"""The reader's fast path builds exactly the batches the general loop builds, sample for sample.

Random records (scrape-shaped ones, and ones with repeats, several timestamps,
unknown series) are dispatched twice from the same WAL: once as the queue does
it, once with the fast path switched off. Every cut batch and every open batch
must be equal: body bytes (encoded as when sent), count, end position, newest timestamp, and the
samples behind them.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from array import array
from pathlib import Path

import pytest

from agent.remote import EndpointConfig, QueueConfig
from agent.remote import dispatch as dispatch_mod
from agent.remote.fastpath import Routes
from agent.remote.position import PositionStore
from agent.remote.queue import EndpointQueue
from agent.remote.series import OwnPrefixes
from agent.wal import WAL, Cursor
from agent.wal import record as walrec
from tests.conftest import ROOT
from tests.protobuf.prompb import decode_write_request
from tests.remote.helpers import now_ms


def _records(tmp: Path, seed: int) -> tuple[WAL, list]:
    rnd = random.Random(seed)
    wal = WAL(tmp / "wal")
    wal.open()
    targets = [[(("__name__", f"m{j % 7}"), ("instance", f"t{t}"), ("j", str(j))) for j in range(rnd.randint(5, 60))]
               for t in range(6)]
    t0 = now_ms()
    for step in range(60):
        series = rnd.choice(targets)
        ts = t0 + step * 1000
        labels = list(series)
        tss = [ts] * len(labels)
        kind = rnd.random()
        if kind < 0.15:  # a repeated series at the same timestamp (relabeling made two identical)
            labels.append(labels[0])
            tss.append(ts)
        elif kind < 0.25:  # two scrapes in one record
            labels += series
            tss += [ts + 500] * len(series)
        elif kind < 0.3:  # a repeat at another timestamp
            labels.insert(len(labels) // 2, labels[-1])
            tss.insert(len(tss) // 2, ts - 1)
        vals = [rnd.random() * 100 for _ in labels]
        wal.append(labels, tss, vals)
        if rnd.random() < 0.1:  # a few of the same series at the same timestamp again, in the next record
            wal.append(labels[:3], tss[:3], [v + 1 for v in vals[:3]])
    cur = Cursor(wal.directory, 0, 0)
    recs = []
    while True:
        r = cur.read(1 << 22)
        if not r.records:
            break
        recs.extend(x for x in r.records if x.type == walrec.SAMPLES)
    return wal, recs


def _state(eq: EndpointQueue) -> list:
    out = []
    for s in eq.shards:
        batches = []
        for b in [*s.ready]:
            samples = [(refs[i], ts[i], vs[i]) for refs, ts, vs, ix, _ in b.parts for i in ix]
            body, _ = eq._encode(b)
            assert body, "a batch encodes to a body"
            batches.append((body, b.count, b.end, b.max_ts, samples, decode_write_request(body, False)))
        open_samples = [(refs[i], ts[i], vs[i]) for refs, ts, vs, ix, _ in s.parts for i in ix]
        out.append((batches, s.count, dict(s.seen), s.max_ts, open_samples))
    return out


async def _dispatch(wal: WAL, recs: list, tmp: Path, shards: int, max_send: int, fast: bool) -> tuple[list, dict]:
    q = QueueConfig(min_shards=shards, max_shards=shards, max_samples_per_send=max_send, capacity=10**9)
    eq = EndpointQueue(EndpointConfig(name="f", url="http://127.0.0.1:9/none", queue=q), wal,
                       PositionStore(tmp / f"pos-{fast}"), {"cluster": "c"})
    await eq.start((0, 0))
    for s in eq.shards:
        s.stopping = True
    for t in eq._tasks + eq._shard_tasks:
        t.cancel()
    orig = dispatch_mod.dispatch_record
    used = 0

    def counting(*a):  # noqa: ANN002, ANN202
        nonlocal used
        done = orig(*a)
        used += done
        return done

    dispatch_mod.dispatch_record = counting if fast else (lambda *a: False)
    try:
        for n, rec in enumerate(recs):
            eq.watcher.hand_over(rec)
            eq.watcher.position = (rec.segment, rec.end)
            if n % 4 == 3 and n < len(recs) - 1:  # what batch_send_deadline does between reads
                for s in eq.shards:
                    if s.count:
                        s.cut(eq.dispatched)
    finally:
        dispatch_mod.dispatch_record = orig
    await eq.client.aclose()
    return _state(eq), {"fast_records": used, **eq.stats.dropped}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("shards", "max_send"), [(1, 2000), (1, 17), (3, 25), (4, 2000), (7, 3)])
def test_fast_path_builds_the_same_batches_as_the_general_loop(tmp_path: Path, seed: int, shards: int,
                                                                max_send: int):
    wal, recs = _records(tmp_path, seed)

    async def main():
        slow, slow_drops = await _dispatch(wal, recs, tmp_path, shards, max_send, fast=False)
        fast, fast_drops = await _dispatch(wal, recs, tmp_path, shards, max_send, fast=True)
        return slow, slow_drops, fast, fast_drops

    slow, slow_drops, fast, fast_drops = asyncio.run(main())
    wal.close()
    used = fast_drops.pop("fast_records")
    slow_drops.pop("fast_records")
    assert used > len(recs) // 3  # most records were scrape-shaped and took the fast path
    assert fast_drops == slow_drops
    assert fast == slow


def test_routes_of_different_targets_share_their_index_ints() -> None:
    """Every target's route holds record indexes 0..n-1: one int object per index per process,
    not per route (28 B per series otherwise)."""
    prefixes = OwnPrefixes({r: b"p" for r in range(5000)})
    routes = Routes()
    a = routes.route(array("Q", range(0, 1000)), 4, prefixes)
    b = routes.route(array("Q", range(1001, 3001)), 4, prefixes)  # another order, and longer
    assert a is not None and b is not None
    assert sorted(a[1]) == list(range(1000)) and sorted(b[1]) == list(range(2000))
    mine = {i: i for i in a[1]}
    assert all(mine[i] is i for i in b[1] if i in mine)


def test_the_index_table_grows_with_the_largest_record_not_at_import() -> None:
    probe = (
        "from array import array\n"
        "from agent.remote import fastpath, series\n"
        "print(len(fastpath._INTS))\n"
        "fastpath.Routes().route(array('Q', range(700)), 3, series.OwnPrefixes.fromkeys(range(700), b'p'))\n"
        "fastpath.Routes().route(array('Q', range(300)), 3, series.OwnPrefixes.fromkeys(range(300), b'p'))\n"
        "print(len(fastpath._INTS))\n"
    )
    p = subprocess.run([sys.executable, "-c", probe], capture_output=True, cwd=ROOT, timeout=60, text=True)
    assert p.stdout.split() == ["0", "700"], p.stderr
