"""bench_kubernetes.py still runs: a small cluster, every phase, no timing asserted."""

from __future__ import annotations

import subprocess
import sys

from tests.procs import ROOT


def test_bench_kubernetes_runs_small() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "loadtest" / "bench_kubernetes.py"),
         "--nodes", "3", "--pods", "30", "--changes", "2"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "first full target set" in out.stdout and "90 targets" in out.stdout
    assert "one pod change" in out.stdout and "one node change (10 pods rebuilt)" in out.stdout
    assert "memory: informers" in out.stdout
