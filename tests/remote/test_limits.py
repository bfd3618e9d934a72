"""sample_age_limit on retries, and a 429 that will never succeed told apart from a rate limit."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.remote import RemoteWrite, WALOptions
from agent.remote.client import is_series_limit
from agent.remote.shards import PROBE
from tests.remote.helpers import batch, endpoint, now_ms, series
from tests.remote.receiver import Receiver


def test_series_limit_phrases():
    assert is_series_limit("per-user series limit of 150000 exceeded")
    assert is_series_limit("err-mimir-max-series-per-metric: per-metric series limit")
    assert is_series_limit("Too many series for tenant")
    assert not is_series_limit("ingestion rate limit (10000) exceeded")
    assert not is_series_limit("")


def test_samples_too_old_for_the_limit_are_dropped_while_retrying(tmp_path: Path):
    state = {"up": False}

    def backend(_req):
        return (204, {}, b"") if state["up"] else (503, {}, b"down")

    async def main():
        rx = await Receiver(backend).start()
        ep = endpoint(rx.url, sample_age_limit=1.0, max_samples_per_send=10)
        rw = RemoteWrite(tmp_path / "wal", [ep], {}, WALOptions())
        await rw.start()
        t0 = now_ms()
        rw.append(batch(10, t0, 1.0))  # fresh when read, but the backend is down
        await asyncio.sleep(1.6)  # retried past the 1 s limit
        state["up"] = True
        t1 = now_ms()
        rw.append(batch(10, t1, 2.0))
        assert await rw.flush()
        st = rw.status()["endpoints"][0]
        await rw.stop()
        await rx.stop()
        return rx, st, t1

    rx, st, t1 = asyncio.run(main())
    assert st["samples_dropped"] == {"too_old": 10}
    assert st["samples_retried"] > 0 and st["samples_failed"] == 0 and st["samples_sent"] == 10
    assert sorted(ts for _lb, ts, _v in rx.accepted) == [t1] * 10


def test_429_series_limit_is_dropped_but_a_rate_limit_is_retried(tmp_path: Path):
    script = [
        (429, {}, b"ingestion rate limit exceeded, slow down"),  # retried
        (429, {}, b"per-user series limit of 5 exceeded"),  # dropped: waiting will not help
    ]

    def backend(req):
        if req.body == PROBE:  # the empty request sent after a failure: the backend is up
            return 204, {}, b""
        return script.pop(0) if script else (204, {}, b"")

    async def main():
        rx = await Receiver(backend).start()
        rw = RemoteWrite(tmp_path / "wal", [endpoint(rx.url, max_samples_per_send=10)], {}, WALOptions())
        await rw.start()
        t0 = now_ms()
        rw.append(batch(10, t0, 1.0))
        rw.append(batch(10, t0 + 1000, 2.0))
        assert await rw.flush()
        st = rw.status()["endpoints"][0]
        await rw.stop()
        await rx.stop()
        return rx, st, t0

    rx, st, t0 = asyncio.run(main())
    probes = [r for r in rx.requests if r.body == PROBE]
    assert len(rx.requests) - len(probes) == 3  # the batch, its retry, the next batch
    assert len(probes) == 1 and st["send_rate"]["probes"] == 1  # after the 429, before the retry
    assert st["samples_retried"] == 10 and st["samples_failed"] == 10 and st["samples_sent"] == 10
    assert st["samples_failed_by_reason"] == {"http_429_series_limit": 10}
    assert [ts for lb, ts, _v in rx.accepted if lb == series(0)] == [t0 + 1000]
