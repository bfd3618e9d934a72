"""A real process SIGKILLed while appending leaves a WAL that reopens cleanly."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent.wal import WAL
from tests.procs import ROOT
from tests.wal.helpers import read_samples

WRITER = r"""
import sys
from pathlib import Path
from agent.wal import WAL
from tests.wal.helpers import series
wal = WAL(Path(sys.argv[1]), segment_size=256 * 1024)
wal.open()
start = int(sys.argv[2])
labels = [series(i) for i in range(200)]
b = start
while True:
    wal.append(labels, [b] * 200, [float(b)] * 200)
    if b == start:
        print("appending", flush=True)
    if b % 50 == 0:
        wal.sync()
    b += 1
"""


def test_sigkill_while_appending_leaves_a_clean_wal(tmp_path: Path):
    d = tmp_path / "wal"
    rnd = random.Random(7)
    next_batch = 0
    for _round in range(4):
        p = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(d), str(next_batch)],
            cwd=ROOT, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert p.stdout is not None
        assert p.stdout.readline().strip() == b"appending"
        time.sleep(rnd.uniform(0.05, 0.4))
        p.send_signal(signal.SIGKILL)
        p.wait()

        wal = WAL(d)
        wal.open()
        got = read_samples(d, wal.labels_by_ref)
        wal.close()
        # Whole batches only, each one complete and in order, none missing before the last.
        assert len(got) % 200 == 0 and got
        batches = [got[i][1] for i in range(0, len(got), 200)]
        assert batches == list(range(len(batches)))
        assert all(v == float(t) for _, t, v in got)
        next_batch = len(batches)
    assert next_batch > 4
