"""The gossiped progress carries real WAL fsync and remote-write lag figures, and every agent
demotes a member whose own figures say it cannot keep up (itself included), then takes it back
after a healthy hold."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.cluster.service import Options
from agent.remote import RemoteWrite, WALOptions
from tests.cluster.test_target_sets import KEYS, OPTS, pair, until
from tests.remote.helpers import batch, endpoint, now_ms
from tests.remote.receiver import Receiver, Request


def test_remote_write_reports_its_lag_and_fsync(tmp_path: Path) -> None:
    down = [False]

    def answer(_req: Request) -> tuple[int, dict[str, str], bytes]:
        return (503, {}, b"down") if down[0] else (204, {}, b"")

    async def run() -> tuple[float, float, float]:
        rx = await Receiver(answer).start()
        rw = RemoteWrite(tmp_path / "wal", [endpoint(rx.url)], {}, WALOptions())
        await rw.start()
        try:
            t0 = now_ms()
            rw.append(batch(5, t0 - 120_000, 1.0))
            assert await rw.flush()
            caught_up = rw.write_progress()[1]
            down[0] = True  # the backend fails: the newer samples stay pending
            rw.append(batch(5, t0, 2.0))
            await until(lambda: rw.write_progress()[1] > 0, "lag seen")
            rw.wal.sync()
            fsync, lag = rw.write_progress()
            return caught_up, lag, fsync
        finally:
            down[0] = False
            await rw.stop(grace=0.5)
            await rx.stop()

    caught_up, lag, fsync = asyncio.run(run())
    assert caught_up == 0.0
    assert 119.0 <= lag <= 121.0  # the pending sample is 120 s newer than the last acknowledged
    assert 0.0 <= fsync < 5.0


def test_a_member_whose_figures_are_bad_is_demoted_everywhere_and_returns() -> None:
    figures = {"a": (0.0, 0.0), "b": (0.0, 0.0)}
    opts = Options(**{**OPTS.__dict__, "progress_interval": 0.1, "healthy_hold": 1.0,
                      "fsync_limit": 5.0, "rw_lag_limit": 60.0, "rw_lag_factor": 4.0, "figures_grace": 1.5})

    async def run() -> None:
        async with pair(opts) as ((a, _), (b, _)):
            a.write_progress = lambda: figures["a"]
            b.write_progress = lambda: figures["b"]
            figures["b"] = (12.0, 0.0)  # b's WAL fsync stuck for 12 s
            await until(lambda: a.ring.names == ("a",) and b.ring.names == ("a",), "b demoted")
            assert a.demoted_why == {"b": "WAL fsync 12.0s"} == b.demoted_why
            assert all(a.owns(k) and not b.owns(k) for k in KEYS)
            figures["b"] = (0.0, 0.0)
            await until(lambda: len(a.ring.names) == 2 and len(b.ring.names) == 2, "b back", 5)
            # Lag: a backend outage that makes both lag demotes nobody; one lagging alone is.
            figures.update(a=(0.0, 300.0), b=(0.0, 400.0))
            await asyncio.sleep(2.5)
            assert len(a.ring.names) == 2 and not a.demoted
            figures.update(a=(0.0, 1.0), b=(0.0, 400.0))
            await until(lambda: a.ring.names == ("a",), "b demoted for lag")
            assert a.demoted_why["b"].startswith("remote-write lag 400s")

    asyncio.run(run())
