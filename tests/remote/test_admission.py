"""Back-pressure from remote write to scraping (agent/remote/admission.py), end to end.

Real exporters scraped by a real scrape pool into a real WAL, sent by one shard
to a real receiver that answers slowly: the sender cannot keep up, so scrape
ticks are skipped (``reason="backpressure"``), fairly across targets, and
everything scraped is still delivered. With the backend down instead, nothing
is skipped: the WAL buffers the outage.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from agent import labels as L
from agent.remote import WALOptions
from agent.remote.admission import FLOOR, MARGIN, MAX_CUT, MAX_RAISE, Admission, Backlog
from agent.remote.write import RemoteWrite
from agent.scrape.config import ScrapeConfig
from agent.scrape.loop import SKIP_BACKPRESSURE
from agent.scrape.pool import ScrapePool
from agent.storage import Fanout, admission
from tests.remote.helpers import endpoint
from tests.remote.receiver import Answer, Receiver, Request, ok
from tests.scrape.server import Exporter

IV = 0.2
SERIES = 250


def exporters(n: int) -> list[Exporter]:
    out = []
    for i in range(n):
        e = Exporter().start()
        e.set(body="".join(f'load_{j}{{t="{i}"}} {j}\n' for j in range(SERIES)))
        out.append(e)
    return out


def scrape_pool(rw: RemoteWrite, es: list[Exporter]) -> ScrapePool:
    pool = ScrapePool(ScrapeConfig(job_name="j", scrape_interval=IV, scrape_timeout=IV * 0.8), Fanout([rw]))
    pool.sync([L.from_dict({"__address__": e.address}) for e in es])
    return pool


def scrapes(es: list[Exporter]) -> list[int]:
    return [sum(1 for path, _ in e.requests if path == "/metrics") for e in es]


def appended(rw: RemoteWrite) -> float:
    v = rw.registry.get_sample_value("prometheus_agent_samples_appended_total")
    assert v is not None
    return v


async def until(cond: Callable[[], bool], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.05)


def test_a_slow_sender_sheds_scrapes_fairly_and_loses_nothing(tmp_path: Path) -> None:
    asyncio.run(slow_sender(tmp_path))


async def slow_sender(tmp_path: Path) -> None:
    es = exporters(4)
    rx = await Receiver(delay=0.2).start()
    # One shard of 500 samples per 0.2 s answer: ~2.5k samples/s, against ~5k/s scraped.
    ep = endpoint(rx.url, min_shards=1, max_shards=1, max_samples_per_send=500, capacity=1000,
                  batch_send_deadline=0.25, catchup_batch=1)
    rw = RemoteWrite(tmp_path / "wal", [ep], {}, WALOptions())
    rw.admitter = Admission(startup=2.0)  # one shard from the start: no ramp to wait for
    await rw.start()
    pool = scrape_pool(rw, es)
    try:
        await until(lambda: pool.skipped[SKIP_BACKPRESSURE] > 0, timeout=30)
        status = rw.status()["admission"]
        assert status["shedding"] and "keeps up with" in status["reason"], status
        assert rw.registry.get_sample_value("shoal_remote_write_shedding") == 1
        assert admission(pool.appendable) < 1.0
        # Fair: over a few seconds of shedding every target is scraped, about as often as the others.
        before = scrapes(es)
        skipped = pool.skipped[SKIP_BACKPRESSURE]
        await asyncio.sleep(3.0)
        made = [b - a for a, b in zip(before, scrapes(es), strict=True)]
        assert pool.skipped[SKIP_BACKPRESSURE] > skipped
        assert min(made) > 0 and min(made) >= max(made) // 2, made
        assert rw.admission() >= FLOOR
    finally:
        await pool.stop()
    try:
        assert await rw.flush(timeout=60)
        q = next(iter(rw.queues.values()))
        assert not q.stats.dropped and not q.stats.failed
        assert len(rx.accepted) == appended(rw) > 0  # every scraped sample delivered
    finally:
        await rw.stop()
        await rx.stop()
        for e in es:
            e.stop()


def test_no_shedding_while_the_backend_is_down(tmp_path: Path) -> None:
    asyncio.run(backend_down(tmp_path))


async def backend_down(tmp_path: Path) -> None:
    es = exporters(4)
    down = False

    def backend(req: Request) -> Answer:
        return (503, {}, b"down") if down else ok(req)

    rx = await Receiver(backend).start()
    ep = endpoint(rx.url, min_shards=1, max_shards=1, max_samples_per_send=500, capacity=1000,
                  batch_send_deadline=0.25)
    rw = RemoteWrite(tmp_path / "wal", [ep], {}, WALOptions())
    rw.admitter = Admission(startup=2.0)
    await rw.start()
    q = next(iter(rw.queues.values()))
    pool = scrape_pool(rw, es)
    try:
        await until(lambda: len(rx.accepted) > 0, timeout=10)
        down = True
        await asyncio.sleep(1.5)  # the first failure answered; shedding from before (if any) undone
        skipped = pool.skipped[SKIP_BACKPRESSURE]
        loop = asyncio.get_running_loop()
        end = loop.time() + 6.0
        while loop.time() < end:
            assert rw.admission() == 1.0, rw.status()["admission"]
            await asyncio.sleep(0.1)
        assert pool.skipped[SKIP_BACKPRESSURE] == skipped
        assert q.lag_seconds() > 2 * ep.queue.batch_send_deadline  # far behind, yet nothing shed
        down = False
    finally:
        await pool.stop()
    try:
        assert await rw.flush(timeout=60)
        assert len(rx.accepted) == appended(rw)  # the outage's backlog delivered
    finally:
        await rw.stop()
        await rx.stop()
        for e in es:
            e.stop()


def test_the_rule() -> None:
    """A sender behind and slower than the appends paces the scrapes; an outage restores all."""
    a = Admission()

    def tick(t: float, lag: float, healthy: bool = True, sent: int = 600) -> float:
        return a.tick(t, {"ep": Backlog(lag, 10.0, healthy, int(1000 * t), int(sent * t))})

    for t in range(3):
        assert tick(t, 12.0 + t) == 1.0  # the window is not yet full
    assert tick(3, 15.0) == pytest.approx(0.6 * MARGIN)  # sending 600 of 1,000/s
    assert "ep" in a.reason and "600" in a.reason
    assert tick(4, 16.0) == pytest.approx(0.6 * MARGIN)  # a change shows after the scrapes in flight
    assert tick(5, 6.0) == pytest.approx(0.6 * MARGIN)  # under the bound: holds, the backlog drains
    assert tick(6, 30.0, healthy=False) == 1.0  # down: the WAL buffers, scrape everything
    assert not a.shedding and a.reason == ""
    # Nothing sent in the window (a queue starting or resharding): no pace to judge.
    for t in range(7, 12):
        assert tick(t, 20.0, sent=0) == 1.0
    # A cut is at most a halving; a sender faster than the appends raises the share again.
    b = Admission()
    for t in range(4):
        b.tick(t, {"ep": Backlog(12.0, 10.0, True, 1000 * t, 100 * t)})
    assert b.share == MAX_CUT
    for t in range(4, 8):
        b.tick(t, {"ep": Backlog(12.0, 10.0, True, 1000 * t, 2000 * t)})
    assert b.share == MAX_CUT * MAX_RAISE
    # A queue in its start-up or still adding shards is not judged; a rebuilt queue's counters
    # starting again do no harm.
    c = Admission()
    for t in range(6):
        assert c.tick(t, {"ep": Backlog(20.0, 10.0, True, 1000 * t, 10 * t, age=t)}) == 1.0
        assert c.tick(t + 0.5, {"ep": Backlog(20.0, 10.0, True, 1000 * t, 10 * t, ramping=True)}) == 1.0
    assert c.tick(7, {"ep": Backlog(2.0, 10.0, True, 5, 0)}) == 1.0
