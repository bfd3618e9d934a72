"""loadtest/outage.py still runs, and runs every --agents x --outage combination in one invocation.

A tiny scenario (one agent, one target, 5 series, outages of 1 and 2 s) with a
real Prometheus behind the fault proxy; only the shape of the output and the
delivery check are asserted, no rate or timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import ROOT

pytestmark = pytest.mark.integration


def test_outage_runs_each_combination_once(tmp_path: Path) -> None:
    out_json = tmp_path / "out.json"
    out = subprocess.run(
        [sys.executable, str(ROOT / "loadtest" / "outage.py"), "--kinds", "shoal", "--agents", "1",
         "--outage", "1,2", "--targets", "1", "--series", "5", "--warmup", "1", "--steady", "2",
         "--after", "3", "--max-drain", "60", "--json", str(out_json)],
        capture_output=True, text=True, timeout=400, cwd=ROOT,
    )
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    for outage in ("1", "2"):
        assert f"### 1 agents, backend answering 503 {outage} s" in out.stdout
    runs = json.loads(out_json.read_text())
    assert [(r["kind"], r["args"]["outage"]) for r in runs] == [("shoal", 1.0), ("shoal", 2.0)]
    for r in runs:
        assert r["check"]["samples"] == r["check"]["expected"] > 0 and r["check"]["problem_count"] == 0
        assert r["traces"][0] and "requests_after" in r and r["load_began"] >= 0


def test_outage_rejects_a_bad_list() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "loadtest" / "outage.py"), "--agents", "3,x"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 2 and "--agents takes whole numbers" in out.stderr
