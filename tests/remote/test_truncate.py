"""Checkpoint and truncation driven by what every endpoint has sent, within the keepalive bounds."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.labels import as_labels
from agent.remote import RemoteWrite, WALOptions
from agent.wal.segment import list_checkpoints
from tests.remote.helpers import batch, endpoint, now_ms, series
from tests.remote.receiver import Receiver

KEEP_NOTHING = WALOptions(truncate_frequency=3600, min_keepalive_time=0, max_keepalive_time=3600)


def test_sent_segments_are_deleted_and_replay_still_knows_the_series(tmp_path: Path):
    async def main():
        rx = await Receiver().start()
        d = tmp_path / "wal"
        rw = RemoteWrite(d, [endpoint(rx.url)], {}, KEEP_NOTHING)
        await rw.start()
        t0 = now_ms()
        rw.append(batch(10, t0, 0.0))
        assert await rw.flush()
        first = rw.wal.segments()
        upto = await rw.truncate()
        assert upto == first[-1] and rw.wal.segments() == [first[-1] + 1]
        assert list_checkpoints(d) == [upto]
        rw.append(batch(10, t0 + 1000, 1.0))  # known series: no new series record, refs from before
        assert await rw.flush()
        await rw.stop()

        rw2 = RemoteWrite(d, [endpoint(rx.url)], {}, KEEP_NOTHING)
        await rw2.start()  # replays checkpoint + remaining segment
        assert set(map(as_labels, rw2.wal.labels_by_ref.values())) == {series(i) for i in range(10)}
        rw2.append(batch(10, t0 + 2000, 2.0))
        assert await rw2.flush()
        await rw2.stop()
        await rx.stop()
        return rx, t0

    rx, t0 = asyncio.run(main())
    for i in range(10):
        got = [(ts, v) for lb, ts, v in rx.accepted if lb == series(i)]
        assert got == [(t0, 0.0), (t0 + 1000, 1.0), (t0 + 2000, 2.0)]


def test_unsent_data_is_kept_until_max_keepalive_then_dropped_and_counted(tmp_path: Path):
    async def main():
        rx = await Receiver(lambda _r: (503, {}, b"")).start()
        d = tmp_path / "wal"
        rw = RemoteWrite(d, [endpoint(rx.url)], {}, KEEP_NOTHING)
        await rw.start()
        rw.append(batch(10, now_ms(), 1.0))
        await asyncio.sleep(0.2)
        assert await rw.truncate() == -1  # the endpoint has not sent it: kept
        assert len(rw.wal.segments()) == 2
        rw.options = WALOptions(min_keepalive_time=0, max_keepalive_time=0)
        upto = await rw.truncate()  # older than max_keepalive_time: deleted all the same
        assert upto >= 0 and rw.wal.segments() == [rw.wal.segment]
        st = rw.status()["endpoints"][0]
        await rw.stop(grace=0.1)
        await rx.stop()
        return st

    st = asyncio.run(main())
    assert st["samples_dropped"]["wal_truncated"] == 10


def test_quiet_series_are_forgotten_after_two_periods(tmp_path: Path):
    async def main():
        rx = await Receiver().start()
        rw = RemoteWrite(tmp_path / "wal", [endpoint(rx.url)], {}, KEEP_NOTHING)
        await rw.start()
        t0 = now_ms()
        rw.append(batch(5, t0, 0.0))
        for k in range(1, 4):
            assert await rw.flush()
            await rw.truncate()
            rw.append(batch(2, t0 + k * 1000, float(k)))  # series 2..4 went quiet
        assert await rw.flush()
        await rw.truncate()
        known = set(map(as_labels, rw.wal.labels_by_ref.values()))
        await rw.stop()
        await rx.stop()
        return known

    assert asyncio.run(main()) == {series(0), series(1)}
