"""The disk budget: beyond it the oldest segments go, sent or not, counted; the agent carries on."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from agent.remote import RemoteWrite, WALOptions
from agent.remote.write import segment_size_for
from agent.storage import SampleBatch
from agent.wal.segment import dir_size
from tests.remote.helpers import endpoint, now_ms, series
from tests.remote.receiver import Receiver

BUDGET = 4 << 20


def _noisy(n: int, ts: int, rnd: random.Random) -> SampleBatch:
    b = SampleBatch()
    for i in range(n):
        b.add(series(i), ts, rnd.random())  # random values: snappy cannot shrink them
    return b


def test_segment_size_follows_the_budget():
    assert segment_size_for(WALOptions()) == 128 << 20
    assert segment_size_for(WALOptions(disk_budget_bytes=BUDGET)) == 1 << 20
    assert segment_size_for(WALOptions(disk_budget_bytes=1000)) == 1 << 20  # never below 1 MiB
    assert segment_size_for(WALOptions(disk_budget_bytes=10 << 30)) == 128 << 20


def test_over_budget_the_oldest_unsent_segments_are_dropped_and_counted(tmp_path: Path):
    state = {"up": False}

    def backend(_req):
        return (204, {}, b"") if state["up"] else (503, {}, b"down")

    async def main():
        rx = await Receiver(backend).start()
        opts = WALOptions(disk_budget_bytes=BUDGET)
        rw = RemoteWrite(tmp_path / "wal", [endpoint(rx.url, max_samples_per_send=2000)], {}, opts)
        await rw.start()
        rnd = random.Random(5)
        t0 = now_ms()
        appended = 0
        peak = 0
        for b in range(400):  # ~16 KiB a batch: ~6.4 MiB in all, over the 4 MiB budget
            rw.append(_noisy(2000, t0 + b, rnd))
            appended += 2000
            if b % 20 == 0:
                await rw.enforce_disk_budget()
                peak = max(peak, dir_size(tmp_path / "wal"))
                await asyncio.sleep(0)
        await rw.enforce_disk_budget()
        size = dir_size(tmp_path / "wal")
        st = rw.status()
        state["up"] = True
        assert await rw.flush(60)
        end = rw.status()["endpoints"][0]
        await rw.stop()
        await rx.stop()
        return appended, size, peak, st, end, rx

    appended, size, peak, st, end, rx = asyncio.run(main())
    print(f"\nWAL size {size} (peak {peak}) for a budget of {BUDGET}; dropped {end['samples_dropped']}")
    assert size <= BUDGET
    assert peak <= BUDGET + (2 << 20)  # between checks it grows by at most what was appended meanwhile
    assert st["wal"]["last_truncation"]["reason"] == "disk_budget"
    lost = end["samples_dropped"]["disk_budget"]
    assert lost > 0
    # Nothing vanished unaccounted: what was not dropped for the budget was delivered.
    assert end["samples_sent"] + lost == appended == len(rx.accepted) + lost
