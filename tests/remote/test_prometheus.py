"""Against a real Prometheus (remote-write receiver): values arrive, restarts and crashes lose nothing."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from agent.remote import RemoteWrite, WALOptions
from agent.storage import STALE_NAN
from agent.wal import record
from agent.wal.reader import read_all
from agent.wal.segment import list_segments, segment_path
from tests.procs import ROOT, eventually, prometheus, query
from tests.remote.helpers import batch, endpoint, now_ms

pytestmark = pytest.mark.integration


def _write_errors(prom_url: str) -> dict[str, float]:
    """Remote-write requests Prometheus refused, and samples it rejected, from its own /metrics."""
    text = httpx.get(prom_url + "/metrics", timeout=10).text
    out = {}
    for line in text.splitlines():
        if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/write"' in line:
            code = re.search(r'code="(\d+)"', line).group(1)
            out[f"http_{code}"] = float(line.rsplit(" ", 1)[1])
        if line.startswith("prometheus_tsdb_out_of_order_samples_total"):
            out["out_of_order"] = float(line.rsplit(" ", 1)[1])
    return out


def test_samples_reach_prometheus_with_values_and_external_labels(tmp_path: Path):
    with prometheus(tmp_path / "prom") as prom:
        url = prom.url + "/api/v1/write"
        t0 = now_ms() - 60_000

        async def main():
            rw = RemoteWrite(tmp_path / "agent" / "wal", [endpoint(url, min_shards=2)], {"cluster": "lab"}, WALOptions())
            await rw.start()
            for b in range(10):
                rw.append(batch(30, t0 + b * 1000, b * 1.5))
            rw.append(batch(30, t0 + 10_000, STALE_NAN))
            assert await rw.flush()
            await rw.stop()

        asyncio.run(main())
        at = (t0 + 9_000) / 1000
        res = eventually(lambda: query(prom.url, 'shoal_test_total{cluster="lab"}', at=at))
        assert len(res) == 30
        assert {r["metric"]["i"] for r in res} == {str(i) for i in range(30)}
        assert all(float(r["value"][1]) == 9 * 1.5 for r in res)
        counts = query(prom.url, "count_over_time(shoal_test_total[5m])", at=at)
        assert {float(r["value"][1]) for r in counts} == {10.0}
        # The stale marker ended the series: nothing is returned just after it.
        assert query(prom.url, "shoal_test_total", at=(t0 + 10_500) / 1000) == []
        assert _write_errors(prom.url).get("http_400", 0) == 0


def _last_batch_in_wal(directory: Path) -> int:
    """The highest batch number the WAL holds (values are batch numbers), or -1."""
    best = -1
    for s in list_segments(directory):
        for rec in read_all(segment_path(directory, s), types=frozenset({record.SAMPLES})).records:
            _, _, vals = record.decode_samples(rec.payload)
            best = max(best, int(max(vals)))
    return best


def test_sigkill_and_restart_resume_without_loss_or_rejections(tmp_path: Path):
    wal_dir = tmp_path / "agent" / "wal"
    rnd = random.Random(11)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with prometheus(tmp_path / "prom") as prom:
        url = prom.url + "/api/v1/write"
        t0 = now_ms() - 30 * 60_000
        first = 0
        for _kill in range(6):
            p = subprocess.Popen(
                [sys.executable, "-m", "tests.remote.child_writer", str(wal_dir), url, str(t0), str(first)],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )
            assert p.stdout is not None
            for _ in range(rnd.randrange(20, 120)):
                line = p.stdout.readline()
                assert line, "writer exited early"
            p.send_signal(signal.SIGKILL)
            p.wait()
            first = _last_batch_in_wal(wal_dir) + 1
        last = first + 40
        out = subprocess.run(
            [sys.executable, "-m", "tests.remote.child_writer", str(wal_dir), url, str(t0), str(first), str(last)],
            cwd=ROOT, env=env, capture_output=True, timeout=120,
        )
        assert out.stdout.decode().strip().endswith("done"), out.stdout[-500:]

        at = (t0 + last * 100) / 1000 + 1
        def complete():
            res = query(prom.url, 'count_over_time(shoal_test_total{job="crash",agent="crash"}[1h])', at=at)
            return len(res) == 100 and all(float(r["value"][1]) == last + 1 for r in res) and res
        eventually(complete, timeout=30)
        sums = query(prom.url, 'sum_over_time(shoal_test_total{job="crash"}[1h])', at=at)
        assert {float(r["value"][1]) for r in sums} == {last * (last + 1) / 2}  # every batch, once
        errors = _write_errors(prom.url)
        assert errors.get("out_of_order", 0) == 0, errors
        # The only refused requests are bodies cut off by the SIGKILL itself (Prometheus
        # reads a truncated body: "unexpected EOF"), at most one per kill; no sample was
        # ever rejected as out of order or as a duplicate with another value.
        log = prom.log_text()
        refused = [ln for ln in log.splitlines() if "write_handler" in ln and "level=error" in ln]
        assert all("unexpected EOF" in ln for ln in refused), refused
        assert errors.get("http_400", 0) == len(refused) <= 6, errors
        assert "out of order" not in log.lower() and "duplicate sample" not in log.lower()
