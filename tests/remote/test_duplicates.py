"""A series repeated at one timestamp (relabeling made two series identical) is sent once, never refused.

A common mistake, ``labeldrop "cpu"`` on node exporter's metrics, turns the
per-CPU series of a scrape into copies of one series with one timestamp and
different values. Prometheus refuses a request with a sample whose timestamp
it already holds with another value (400 "duplicate sample for timestamp")
and drops the whole request; so the queue keeps the first copy, drops the
rest (counted as ``duplicate_timestamp``), and every distinct series arrives.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.remote import RemoteWrite, WALOptions
from agent.storage import SampleBatch
from tests.procs import eventually, prometheus, query
from tests.remote.helpers import endpoint, now_ms
from tests.remote.test_prometheus import _write_errors

pytestmark = pytest.mark.integration

MODES = ["idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice"]
CPUS = 4
OTHER = 30  # series that stay distinct
SCRAPES = 6


def scrape(n: int, ts: int) -> SampleBatch:
    """node_cpu_seconds_total with its cpu label dropped (CPUS copies of each mode), among other series."""
    b = SampleBatch()
    for i in range(OTHER // 2):
        b.add((("__name__", "node_other"), ("i", str(i)), ("job", "node")), ts, float(n))
    for cpu in range(CPUS):
        for m, mode in enumerate(MODES):
            # The first copy's value is known: 1000 * n + m; later copies differ.
            b.add((("__name__", "node_cpu_seconds_total"), ("job", "node"), ("mode", mode)), ts,
                  1000.0 * n + m + cpu * 0.25)
    for i in range(OTHER // 2, OTHER):
        b.add((("__name__", "node_other"), ("i", str(i)), ("job", "node")), ts, float(n))
    return b


@pytest.mark.parametrize("max_send", [7, 2000])
def test_same_timestamp_repeats_keep_the_first_and_every_series_arrives(tmp_path: Path, max_send: int):
    distinct = OTHER + len(MODES)
    repeats = (CPUS - 1) * len(MODES) * SCRAPES
    with prometheus(tmp_path / "prom") as prom:
        url = prom.url + "/api/v1/write"
        t0 = now_ms() - 60_000

        async def main():
            # Small batches put batch cuts between the copies of a series, too.
            rw = RemoteWrite(tmp_path / "agent" / "wal", [endpoint(url, min_shards=2, max_shards=2,
                                                                  max_samples_per_send=max_send)],
                             {}, WALOptions())
            await rw.start()
            for n in range(SCRAPES):
                rw.append(scrape(n, t0 + n * 1000))
            assert await rw.flush()
            st = rw.status()["endpoints"][0]
            await rw.stop()
            return st

        st = asyncio.run(main())
        assert st["samples_failed"] == 0, st
        assert st["samples_dropped"] == {"duplicate_timestamp": repeats}, st
        assert st["samples_sent"] == distinct * SCRAPES
        at = (t0 + (SCRAPES - 1) * 1000) / 1000
        res = eventually(lambda: len(query(prom.url, '{job="node"}', at=at)) == distinct
                         and query(prom.url, '{job="node"}', at=at))
        cpu = {r["metric"]["mode"]: float(r["value"][1]) for r in res if r["metric"]["__name__"] ==
               "node_cpu_seconds_total"}
        assert cpu == {mode: 1000.0 * (SCRAPES - 1) + m for m, mode in enumerate(MODES)}  # the first copy
        counts = query(prom.url, 'count_over_time({job="node"}[5m])', at=at)
        assert len(counts) == distinct and {float(r["value"][1]) for r in counts} == {float(SCRAPES)}
        errors = _write_errors(prom.url)
        assert errors.get("http_400", 0) == 0, errors
        assert "duplicate sample" not in prom.log_text().lower()
