"""The queue against a small real HTTP receiver: order, retries, drops, external labels, resume."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

from agent.remote import RemoteWrite, WALOptions
from agent.storage import Appendable
from tests.remote.helpers import batch, endpoint, now_ms, series
from tests.remote.receiver import Receiver


def by_series(accepted):
    out = defaultdict(list)
    for labels, ts, v in accepted:
        out[labels].append((ts, v))
    return out


def test_samples_arrive_in_order_with_external_labels(tmp_path: Path):
    async def main():
        rx = await Receiver().start()
        rw = RemoteWrite(tmp_path / "wal", [endpoint(rx.url, min_shards=4, max_samples_per_send=37)],
                         {"cluster": "c1", "job": "must-not-win"}, WALOptions())
        assert isinstance(rw, Appendable)
        t0 = now_ms()
        rw.append(batch(50, t0, 0.0))  # before start(): kept, not lost
        await rw.start()
        for b in range(1, 20):
            rw.append(batch(50, t0 + b * 1000, float(b)))
        assert await rw.flush()
        st = rw.status()
        await rw.stop()
        await rx.stop()
        return rx, st, t0

    rx, st, t0 = asyncio.run(main())
    got = by_series(rx.accepted)
    assert len(got) == 50
    for i in range(50):
        want_labels = tuple(sorted(series(i) + (("cluster", "c1"),)))
        assert got[want_labels] == [(t0 + b * 1000, float(b)) for b in range(20)]
    ep = st["endpoints"][0]
    assert ep["samples_sent"] == 1000 and ep["pending_samples"] == 0 and ep["shards"] == 4
    assert all(len(r.body) > 0 for r in rx.requests)
    assert max(len(rx.accepted) for _ in [0]) == 1000


def test_backend_500_then_recovers_every_sample_arrives_in_order(tmp_path: Path):
    state = {"n": 0}

    def flaky(_req):
        state["n"] += 1
        return (500, {}, b"down") if state["n"] <= 12 else (204, {}, b"")

    async def main():
        rx = await Receiver(flaky).start()
        rw = RemoteWrite(tmp_path / "wal", [endpoint(rx.url, min_shards=3, max_samples_per_send=100)], {}, WALOptions())
        await rw.start()
        t0 = now_ms()
        for b in range(30):
            rw.append(batch(40, t0 + b * 1000, float(b)))
            await asyncio.sleep(0.005)
        assert await rw.flush()
        st = rw.status()["endpoints"][0]
        await rw.stop()
        await rx.stop()
        return rx, st, t0

    rx, st, t0 = asyncio.run(main())
    got = by_series(rx.accepted)
    assert len(rx.accepted) == 1200
    for i in range(40):
        assert got[series(i)] == [(t0 + b * 1000, float(b)) for b in range(30)]
    assert st["samples_retried"] > 0 and st["samples_failed"] == 0
    assert "http_500" in st["last_error"]
    assert any("retry-attempt" in r.headers for r in rx.requests)


def test_400_drops_the_batch_counts_it_and_goes_on(tmp_path: Path):
    state = {"n": 0}

    def reject_first(_req):
        state["n"] += 1
        return (400, {}, b"out of bounds") if state["n"] == 1 else (204, {}, b"")

    async def main():
        rx = await Receiver(reject_first).start()
        rw = RemoteWrite(tmp_path / "wal", [endpoint(rx.url, max_samples_per_send=10)], {}, WALOptions())
        await rw.start()
        t0 = now_ms()
        for b in range(3):
            rw.append(batch(10, t0 + b * 1000, float(b)))
        assert await rw.flush()
        st = rw.status()["endpoints"][0]
        await rw.stop()
        await rx.stop()
        return rx, st

    rx, st = asyncio.run(main())
    assert st["samples_failed"] == 10 and st["samples_sent"] == 20 and st["samples_retried"] == 0
    assert len(rx.requests) == 3  # the rejected batch was not sent again
    assert "http_400" in st["last_error"]


def test_retry_after_is_honoured_and_stop_does_not_wait_for_it(tmp_path: Path):
    def limited(_req):
        return 429, {"Retry-After": "3600"}, b"rate limited"

    async def main():
        rx = await Receiver(limited).start()
        rw = RemoteWrite(tmp_path / "wal", [endpoint(rx.url)], {}, WALOptions())
        await rw.start()
        rw.append(batch(5, now_ms(), 1.0))
        for _ in range(100):
            if rx.requests:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)  # min_backoff is 10 ms: without Retry-After this is many retries
        n = len(rx.requests)
        st = rw.status()["endpoints"][0]
        await asyncio.wait_for(rw.stop(), 10)
        await rx.stop()
        return n, st

    n, st = asyncio.run(main())
    assert n == 1
    assert st["pending_samples"] == 5 and "http_429" in st["last_error"]


def test_restart_resumes_at_the_durable_position_without_resending(tmp_path: Path):
    async def run(rx_url, first_b, count, t0):
        rw = RemoteWrite(tmp_path / "wal", [endpoint(rx_url, min_shards=2)], {}, WALOptions())
        await rw.start()
        for b in range(first_b, first_b + count):
            rw.append(batch(20, t0 + b * 1000, float(b)))
        assert await rw.flush()
        await rw.stop()

    async def main():
        rx = await Receiver().start()
        t0 = now_ms()
        await run(rx.url, 0, 5, t0)
        await run(rx.url, 5, 5, t0)
        await rx.stop()
        return rx, t0

    rx, t0 = asyncio.run(main())
    got = by_series(rx.accepted)
    for i in range(20):
        assert got[series(i)] == [(t0 + b * 1000, float(b)) for b in range(10)]  # no duplicates


def test_endpoint_down_at_stop_resends_after_restart(tmp_path: Path):
    async def main():
        down = await Receiver(lambda _r: (503, {}, b"")).start()
        url = down.url
        t0 = now_ms()
        rw = RemoteWrite(tmp_path / "wal", [endpoint(url)], {}, WALOptions())
        await rw.start()
        for b in range(4):
            rw.append(batch(10, t0 + b * 1000, float(b)))
        await asyncio.sleep(0.3)
        await rw.stop(grace=0.1)
        await down.stop()
        # The backend comes back on another port; same endpoint name, so same position.
        up = await Receiver().start()
        rw2 = RemoteWrite(tmp_path / "wal", [endpoint(up.url)], {}, WALOptions())
        await rw2.start()
        assert await rw2.flush()
        await rw2.stop()
        await up.stop()
        return up, t0

    up, t0 = asyncio.run(main())
    got = by_series(up.accepted)
    assert got[series(3)] == [(t0 + b * 1000, float(b)) for b in range(4)]


def test_update_adds_at_now_removes_and_keeps_position_of_changed(tmp_path: Path):
    async def main():
        a = await Receiver().start()
        b = await Receiver().start()
        ep_a = endpoint(a.url)
        ep_a.name = "a"
        rw = RemoteWrite(tmp_path / "wal", [ep_a], {}, WALOptions())
        await rw.start()
        t0 = now_ms()
        rw.append(batch(3, t0, 0.0))
        assert await rw.flush()
        ep_b = endpoint(b.url)
        ep_b.name = "b"
        changed_a = endpoint(a.url, max_samples_per_send=1)
        changed_a.name = "a"
        await rw.update([changed_a, ep_b], {"env": "x"}, WALOptions())
        rw.append(batch(3, t0 + 1000, 1.0))
        assert await rw.flush()
        await rw.update([ep_b], {"env": "x"}, WALOptions())
        rw.append(batch(3, t0 + 2000, 2.0))
        assert await rw.flush()
        names = [e["name"] for e in rw.status()["endpoints"]]
        await rw.stop()
        await a.stop()
        await b.stop()
        return a, b, names, t0

    a, b, names, t0 = asyncio.run(main())
    assert names == ["b"]
    # a: the first batch, then (after its change, same position, no re-send) the second, with env.
    assert [(ts, v) for lb, ts, v in a.accepted if ("i", "0") in lb] == [(t0, 0.0), (t0 + 1000, 1.0)]
    assert all(("env", "x") in lb for lb, ts, _ in a.accepted if ts > t0)
    # b: added at "now", so only what came after it.
    assert sorted({ts for _, ts, _ in b.accepted}) == [t0 + 1000, t0 + 2000]
