"""The shard count follows backlog and backend latency, and resharding keeps order and positions."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

from agent.remote import RemoteWrite, WALOptions
from agent.remote.ewma import EWMARate
from agent.remote.sharding import STARTUP_TICKS, ShardTuner, TunerInput, desired_shards
from tests.remote.helpers import batch, endpoint, now_ms, series
from tests.remote.receiver import Receiver


def test_ewma_rate_starts_at_the_first_measure_then_moves_by_alpha():
    r = EWMARate(0.2, 10.0)
    r.incr(100)
    assert r.tick() == 10.0
    r.incr(200)
    assert r.tick() == 10.0 + 0.2 * (20.0 - 10.0)
    assert r.tick(5.0) == 12.0 + 0.2 * (0.0 - 12.0)


def test_desired_shards_arithmetic():
    kw = dict(rate_dropped=0.0, delay=0.0)
    # 1000 samples/s in and out, each sample costs 4 ms of shard time: 4 shards.
    assert desired_shards(1, 1, 50, rate_in=1000, rate_out=1000, busy=4.0, **kw) == 4
    # within 30 % of the current count: no change
    assert desired_shards(4, 1, 50, rate_in=1000, rate_out=1000, busy=4.6, **kw) == 4
    # clamped to max_shards and min_shards
    assert desired_shards(1, 1, 3, rate_in=1000, rate_out=1000, busy=4.0, **kw) == 3
    assert desired_shards(8, 2, 50, rate_in=10, rate_out=10, busy=0.01, **kw) == 2
    # a backlog asks for more: 100 s behind at 1000/s in, 5 % a second to catch up
    assert desired_shards(4, 1, 50, rate_in=1000, rate_out=1000, busy=4.0, rate_dropped=0.0, delay=100) == 24
    # more than 10 s behind: never fewer shards
    assert desired_shards(8, 1, 50, rate_in=10, rate_out=10, busy=0.01, rate_dropped=0.0, delay=30) == 8
    # nothing sent yet: nothing to go on
    assert desired_shards(3, 1, 50, rate_in=1000, rate_out=0, busy=0.0, **kw) == 3


def test_no_growth_while_shards_sit_idle_and_the_queue_is_behind():
    """The heavy run's numbers: 20 shards, 4 of them busy, 13 s behind; the formula alone wants 46."""
    kw = dict(rate_in=171245.0, rate_out=25295.0, rate_dropped=0.0, busy=4.0, delay=13.5)
    assert desired_shards(20, 1, 50, **kw) == 46
    assert desired_shards(20, 1, 50, busy_now=4.0, **kw) == 20
    # the reader waited for a full shard: the shards are the limit after all
    assert desired_shards(20, 1, 50, busy_now=4.0, reader_waited=True, **kw) == 46
    # shards busy most of the time: growth as before
    assert desired_shards(20, 1, 50, busy_now=15.0, **kw) == 46
    # idle shards never stop a scale-down
    assert desired_shards(20, 1, 50, rate_in=100.0, rate_out=100.0, rate_dropped=0.0, busy=0.5,
                          delay=0.0, busy_now=0.5) == 1


def test_the_tuner_at_most_doubles_per_tick_from_a_start_up_that_asks_for_dozens():
    """Issue 6's start-up: one shard full while the first scrapes create every series."""
    tuner = ShardTuner(1, 50, 10.0)
    assert [tuner.next_wait() for _ in range(2)] == [2.0, 2.0]  # short ticks while starting
    shards, seen = 1, []
    for i in range(8):
        # 200k/s in, one shard's worth out per shard, every shard busy, 5 s behind and more.
        tuner.samples_in.incr(400_000)
        tuner.samples_out.incr(20_000 * shards)
        inp = TunerInput(100.0 + 2 * i, 95.0, failing=False, busy=2.0 * shards)
        shards = tuner.tick(shards, 2.0, inp)
        seen.append(shards)
        assert tuner.last["formula"] >= tuner.last["desired"]
        if i == 0:
            assert tuner.last["formula"] >= 25  # the formula alone would jump to dozens
    assert seen[0] == 2
    assert all(b <= 2 * a for a, b in zip([1, *seen], seen, strict=False))
    assert seen[:4] == [2, 4, 8, 16]  # it still gets there when the following ticks keep asking
    assert tuner.ticks == 8 and tuner.next_wait() == 10.0
    assert STARTUP_TICKS < 8
    # Shrinking is not bounded: a quiet queue drops to what the formula says at once.
    tuner.samples_in.incr(20)
    tuner.samples_out.incr(20)
    shrunk = tuner.tick(50, 10.0, TunerInput(200.0, 200.0, failing=False, busy=0.01))
    assert shrunk == tuner.last["formula"] < 25


def test_a_start_up_interval_shorter_than_the_startup_tick_is_kept():
    assert ShardTuner(1, 6, 0.25).next_wait() == 0.25


def test_slow_backend_grows_shards_then_they_shrink_and_order_holds(tmp_path: Path):
    async def main():
        rx = await Receiver(delay=0.05).start()
        ep = endpoint(rx.url, min_shards=1, max_shards=6, max_samples_per_send=50, shard_update_interval=0.25)
        rw = RemoteWrite(tmp_path / "wal", [ep], {}, WALOptions())
        await rw.start()
        t0 = now_ms()
        counts = []
        for b in range(120):  # ~4000 samples/s against one shard's ~1000/s (doubling: 1, 2, 4)
            rw.append(batch(200, t0 + b * 1000, float(b)))
            await asyncio.sleep(0.05)
            counts.append(len(rw.queues["test"].shards))
        grown = max(counts)
        for _ in range(200):
            await asyncio.sleep(0.05)
            if len(rw.queues["test"].shards) == 1 and rw.queues["test"].pending() == 0:
                break
        shrunk = len(rw.queues["test"].shards)
        assert await rw.flush()
        st = rw.status()["endpoints"][0]
        await rw.stop()
        saved = (tmp_path / "wal" / "positions" / "test.json").read_text()
        # A restart resumes with the saved shard count and re-sends nothing.
        rw2 = RemoteWrite(tmp_path / "wal", [ep], {}, WALOptions())
        await rw2.start()
        rw2.append(batch(200, t0 + 120_000, 120.0))
        assert await rw2.flush()
        await rw2.stop()
        await rx.stop()
        return rx, grown, shrunk, st, saved, t0

    rx, grown, shrunk, st, saved, t0 = asyncio.run(main())
    print("shards grew to", grown, "then", shrunk, "reshards", st["reshards"], st["shard_tuning"])
    assert grown >= 3
    assert shrunk == 1
    assert st["reshards"] >= 2
    assert saved.count("[") - 1 == shrunk  # one point per shard
    got = defaultdict(list)
    for labels, ts, v in rx.accepted:
        got[labels].append((ts, v))
    assert len(got) == 200
    for i in range(200):
        assert got[series(i)] == [(t0 + b * 1000, float(b)) for b in range(121)]  # in order, once each
