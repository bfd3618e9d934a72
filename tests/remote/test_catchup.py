"""Catch-up batches: several samples per series after a failure, announced before they are sent.

A backlog of many scrape intervals must drain in few requests (each holding
a series several times, in timestamp order), and the end of such a batch
must be durable in the position file before it is sent, so that a restart
re-sends that range one sample per series per request, cut exactly there.
"""

from __future__ import annotations

import asyncio
import json
from array import array
from pathlib import Path

from agent.remote import RemoteWrite, WALOptions
from agent.remote.dispatch import Dispatcher
from agent.remote.series import SeriesTable
from agent.remote.shards import PROBE, Shard
from agent.wal import record
from agent.wal.reader import read_all
from agent.wal.segment import list_segments, segment_path
from tests.protobuf.prompb import decode_write_request
from tests.remote.helpers import batch, endpoint, now_ms, series
from tests.remote.receiver import Receiver

SERIES = 5
BACKLOG = 12


def test_a_backlog_drains_in_few_requests_with_each_series_in_order(tmp_path: Path):
    down = True
    intents: list[dict] = []
    pos_dir = tmp_path / "wal" / "positions"

    def backend(req):
        if down:
            return 503, {}, b"down"
        if req.body != PROBE:  # the position file while a catch-up batch is in flight
            intents.extend(json.loads(p.read_text()).get("intents") or [] for p in pos_dir.glob("*.json"))
        return 204, {}, b""

    async def main():
        nonlocal down
        rx = await Receiver(backend).start()
        rw = RemoteWrite(tmp_path / "wal", [endpoint(rx.url, max_samples_per_send=10)], {}, WALOptions())
        await rw.start()
        t0 = now_ms()
        rw.append(batch(SERIES, t0, 0.0))
        while not rw.status()["endpoints"][0]["send_rate"]["limited"]:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.2)  # the queue's once-a-second tick turns catch-up batches on
        for i in range(1, BACKLOG):
            rw.append(batch(SERIES, t0 + 1000 * i, float(i)))
        await asyncio.sleep(0.5)
        n_down = len(rx.requests)
        down = False
        assert await rw.flush(20)
        st = rw.status()["endpoints"][0]
        await rw.stop()
        await rx.stop()
        return rx, st, t0, n_down

    rx, st, t0, n_down = asyncio.run(main())
    data = [decode_write_request(r.body) for r in rx.requests[n_down:] if r.body != PROBE]
    # 12 intervals of 5 series, 10 samples a batch when healthy: one sample per series per batch
    # would take 12 requests; catch-up batches (4 x 10 samples) take 2.
    assert len(data) <= 3, [len(d) for d in data]
    assert any(len({lb for lb, _ in d}) < len(d) for d in data)  # a series more than once in a request
    for i in range(SERIES):
        got = [ts for lb, ts, _v in rx.accepted if lb == series(i)]
        assert got == [t0 + 1000 * k for k in range(BACKLOG)]  # every sample, once, in order
    assert st["samples_sent"] == SERIES * BACKLOG and st["samples_failed"] == 0
    assert any(e is not None for lst in intents for e in lst)  # announced before it was sent


def _shard(i: int) -> Shard:
    async def durable(_i: int, _p: tuple[int, int, int]) -> None:
        return None

    return Shard(i, (0, 0, 0), client=None, backoff=None, max_samples=100, deadline=60.0,  # type: ignore[arg-type]
                 metrics=None, dispatched=lambda: (0, 0, 0), on_done=lambda *_: None,  # type: ignore[arg-type]
                 durable=durable, encode=lambda b: (b"", ""))


def test_after_a_crash_the_announced_range_is_resent_one_sample_per_series_and_cut_at_its_end():
    labels = {r: series(r) for r in range(4)}

    async def main():
        d = Dispatcher(SeriesTable(labels, {}, []), 0.0, lambda *_: None)
        d.shards = [_shard(0)]
        d.fast = False
        d.multi = True  # catching up again at once: still, the announced range goes one sample per series
        d.layered = [(0, 20, 2)]  # the crashed catch-up batch ended in record (0, 20) at index 2
        refs = array("Q", range(4))
        for off, t in ((0, 1000), (10, 2000), (20, 3000), (30, 4000)):
            d.samples(0, off, refs, array("q", [t] * 4), array("d", [1.0] * 4))
        return d

    d = asyncio.run(main())
    s = d.shards[0]
    cut = list(s.ready)
    ends = [b.end for b in cut]
    assert ends[:3] == [(0, 10, 0), (0, 20, 0), (0, 20, 2)]  # one sample per series each, cut at the intent
    assert [b.count for b in cut[:3]] == [4, 4, 2] and not any(b.repeats for b in cut[:3])
    assert d.layered is None  # past it: catch-up batches again
    assert s.count == 6 and s.repeats  # the rest of record 20 and record 30, series repeated


def test_a_restart_with_an_announced_batch_resends_it_one_sample_per_series(tmp_path: Path):
    """The position file says a catch-up batch up to the third scrape may have been sent."""
    wal_dir = tmp_path / "wal"

    async def append_unsent():
        rx = await Receiver(lambda _r: (503, {}, b"down")).start()
        rw = RemoteWrite(wal_dir, [endpoint(rx.url)], {}, WALOptions())
        await rw.start()
        t0 = now_ms()
        for i in range(4):
            rw.append(batch(SERIES, t0 + 1000 * i, float(i)))
        await asyncio.sleep(0.3)
        await rw.stop(grace=0.1)
        await rx.stop()
        return t0

    t0 = asyncio.run(append_unsent())
    seg = min(list_segments(wal_dir))
    scrapes = [r.offset for r in read_all(segment_path(wal_dir, seg)).records if r.type == record.SAMPLES]
    assert len(scrapes) == 4
    pos_file = next((wal_dir / "positions").glob("*.json"))
    doc = json.loads(pos_file.read_text())
    doc["intents"] = [[seg, scrapes[3], 0]]  # the crashed batch held scrapes 0-2
    pos_file.write_text(json.dumps(doc))

    async def restart(up: bool):
        rx = await (Receiver() if up else Receiver(lambda _r: (503, {}, b"down"))).start()
        rw = RemoteWrite(wal_dir, [endpoint(rx.url, max_samples_per_send=100)], {}, WALOptions())
        await rw.start()
        if up:
            assert await rw.flush(10)
        else:
            await asyncio.sleep(0.5)
        await rw.stop(grace=0.1)
        await rx.stop()
        return rx

    asyncio.run(restart(up=False))  # crashed again before the range went out: the intent is kept
    assert json.loads(pos_file.read_text())["intents"] == [[seg, scrapes[3], 0]]
    rx = asyncio.run(restart(up=True))
    data = [decode_write_request(r.body) for r in rx.requests if r.body != PROBE]
    # Scrapes 0, 1, 2 one request each (one sample per series), then scrape 3 after the cut.
    assert [sorted({ts for _lb, ss in d for ts, _v in ss}) for d in data] == [[t0 + 1000 * i] for i in range(4)]
    assert all(len(d) == SERIES for d in data)
    assert "intents" not in json.loads(pos_file.read_text())  # passed: gone
