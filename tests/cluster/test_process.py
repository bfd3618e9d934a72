"""A member in a real process, paused with SIGSTOP and resumed with SIGCONT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from agent.cluster import Liveness
from tests.cluster.helpers import Nodes, liveness, next_host, wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_a_paused_process_is_declared_dead_and_returns_with_a_higher_incarnation(
    nodes: Nodes,
) -> None:
    a, b = nodes.cluster(2)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.cluster.member", "paused", next_host(), a.address],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        line = ""
        while not line.startswith("ADDRESS "):
            line = proc.stdout.readline().decode()
            assert line, "the member exited before it started"
        address = line.split()[1]
        wait_until(
            lambda: (
                liveness(a, "paused") is Liveness.ALIVE and liveness(b, "paused") is Liveness.ALIVE
            ),
            15,
            "the process joined",
        )
        before = a.view.get("paused").incarnation  # type: ignore[union-attr]
        proc.send_signal(signal.SIGSTOP)
        wait_until(
            lambda: (
                liveness(a, "paused") is Liveness.DEAD and liveness(b, "paused") is Liveness.DEAD
            ),
            30,
            "the paused process declared dead",
        )
        assert a.owner("any-target").name in ("n0", "n1")  # type: ignore[union-attr]
        proc.send_signal(signal.SIGCONT)
        wait_until(
            lambda: (
                liveness(a, "paused") is Liveness.ALIVE and liveness(b, "paused") is Liveness.ALIVE
            ),
            30,
            "alive again after SIGCONT",
        )
        assert a.view.get("paused").incarnation > before  # type: ignore[union-attr]
        assert a.view.get("paused").addr == address  # type: ignore[union-attr]
    finally:
        proc.send_signal(signal.SIGCONT)
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
