"""Three agents, a real Prometheus behind the fault proxy, and an outage.

The backend becomes unreachable (connections refused) for OUTAGE seconds
while three agent processes keep appending, then returns. Every sample must
arrive, in order (Prometheus rejected nothing as out of order), and the
request rate in the first seconds after recovery must stay a small multiple
of the steady rate, not the burst of three backlogs drained flat out. Only
request counts are asserted; the figures are printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.faultproxy import FaultProxy
from tests.procs import ROOT, prometheus, query
from tests.remote.test_prometheus import _write_errors

pytestmark = pytest.mark.integration

AGENTS = 3
SERIES = 200
PERIOD = 0.5  # one batch (one request) per agent per period when healthy
STEADY = 6.0
OUTAGE = 30.0
FIRST = 5.0  # "the first seconds after recovery"
RECOVERY = 25.0  # watched after the backend returns; stragglers are flushed after it


def test_three_agents_recover_gently_and_lose_nothing(tmp_path: Path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with prometheus(tmp_path / "prom") as prom, FaultProxy(prom.url) as proxy:
        url = proxy.url + "/api/v1/write"
        agents = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.remote.outage_agent", str(tmp_path / f"a{i}" / "wal"), url,
                 f"agent{i}", str(SERIES), str(PERIOD)],
                cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )
            for i in range(AGENTS)
        ]
        try:
            proxy.wait_for(AGENTS * 2, timeout=30, path="/api/v1/write")  # all three are sending
            t_steady = time.monotonic()
            time.sleep(STEADY)
            t_down = time.monotonic()
            proxy.refuse()
            time.sleep(OUTAGE)
            proxy.accept()
            t_up = time.monotonic()
            time.sleep(RECOVERY)
            t_drained = time.monotonic()
            results = []
            for p in agents:
                out, _ = p.communicate(b"stop\n", timeout=150)
                results.append(json.loads(out.decode().strip().splitlines()[-1]))
        finally:
            for p in agents:
                if p.poll() is None:
                    p.kill()
                    p.wait()

        steady_n = proxy.count(since=t_steady, until=t_down, path="/api/v1/write")
        steady_rate = steady_n / (t_down - t_steady)
        first_n = proxy.count(since=t_up, until=t_up + FIRST, path="/api/v1/write")
        first_rate = first_n / FIRST
        per_sec = proxy.per_second(t_up, t_drained, path="/api/v1/write")
        backlog_batches = OUTAGE / PERIOD * AGENTS
        print(f"\nsteady: {steady_n} requests in {t_down - t_steady:.1f}s = {steady_rate:.2f}/s (3 agents)")
        print(f"first {FIRST:.0f}s after recovery: {first_n} requests = {first_rate:.2f}/s "
              f"= {first_rate / steady_rate:.2f}x steady")
        print(f"after recovery, requests per second: {per_sec}")
        peak = max(range(len(per_sec)), key=per_sec.__getitem__)
        calm = [i for i in range(peak, len(per_sec)) if per_sec[i] <= steady_rate * 1.5]
        drained = f"~{calm[0]}s" if calm else f"more than {RECOVERY:.0f}s (the rest after the window)"
        print(f"backlog: ~{backlog_batches:.0f} batches; peak {per_sec[peak]}/s at {peak}s; "
              f"back to the steady rate after {drained}")
        for r in results:
            print("agent:", r["batches"], "batches;", r["status"]["send_rate"], "retried",
                  r["status"]["samples_retried"])

        # Every sample arrived, once: count and sum per series match what each agent appended.
        assert all(r["flushed"] for r in results), results
        for i, r in enumerate(results):
            n = r["batches"]
            at = time.time() + 1
            counts = query(prom.url, f'count_over_time(shoal_test_total{{job="agent{i}"}}[10m])', at=at)
            sums = query(prom.url, f'sum_over_time(shoal_test_total{{job="agent{i}"}}[10m])', at=at)
            assert len(counts) == SERIES
            assert {float(c["value"][1]) for c in counts} == {float(n)}
            assert {float(s["value"][1]) for s in sums} == {n * (n - 1) / 2}
            assert r["status"]["samples_failed"] == 0 and not r["status"]["samples_dropped"]
        errors = _write_errors(prom.url)
        assert errors.get("out_of_order", 0) == 0 and errors.get("http_400", 0) == 0, errors
        assert "out of order" not in prom.log_text().lower()
        # Gentle: the first seconds after recovery carry a small multiple of the steady
        # request rate (an unpaced drain of ~180 batches would send them all at once).
        assert steady_n > 0
        assert first_n <= 3 * steady_rate * FIRST, (first_n, steady_rate)
