"""A sampling profiler for a real ``shoal run``, without py-spy.

Issue 16 asks where Shoal's CPU goes under the load-test workloads, and the
machine has no py-spy. cProfile's per-call hooks distort a hot path made of
many small C-level calls, so this samples instead: ``setitimer(ITIMER_PROF)``
raises SIGPROF every 1/``--hz`` seconds of the process's CPU time, and the
handler (which Python runs in the main thread, the event loop's, between
bytecodes) counts the stack it interrupted. Ticks follow CPU time, so a line
that waits costs nothing and a long C call is charged to the line that made
it. (A thread that reads ``sys._current_frames()`` instead only runs when the
loop lets go of the GIL, which over-counts every socket and file call.)
CPU used by other threads while the loop waits shows up as idle ticks.

Run it in place of ``shoal``::

    python loadtest/profile.py --out /tmp/p --skip 15 -- run --server.http.listen-addr=... cfg.alloy

or through the harness, which prefixes Shoal's command with it when
``SHOAL_PROFILE`` is set (``out=PATH,skip=SECONDS,hz=N``)::

    SHOAL_PROFILE=out=/tmp/p,skip=15 flock /tmp/shoal-loadtest.lock \\
        bash loadtest/run --workload heavy --agents shoal --duration 30 --docs no

Every few seconds it rewrites ``PATH.txt`` (top functions and lines by own
and total share of the CPU ticks) and ``PATH.folded`` (collapsed stacks, one
per line, for a flame graph), so a process the harness stops with SIGKILL
still leaves them. Ticks whose innermost frame is the selector's wait count
as idle (the CPU went to another thread).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
IDLE = {("selectors.py", "select")}


def _frame_key(f: FrameType) -> tuple[str, str, int]:
    co = f.f_code
    return (co.co_filename, co.co_name, f.f_lineno)


def _short(path: str) -> str:
    p = str(path)
    for marker in ("/agent/", "/site-packages/", "/lib/python3"):
        i = p.rfind(marker)
        if i >= 0:
            return p[i + 1 :]
    return os.path.basename(p)


class Sampler:
    """Counts the main thread's stack at every SIGPROF tick."""

    def __init__(self, hz: float, skip: float) -> None:
        self.interval = 1.0 / hz
        self.start_at = time.monotonic() + skip
        self.stacks: Counter[tuple[tuple[str, str, int], ...]] = Counter()
        self.samples = 0
        self.idle = 0
        self.cpu0 = 0.0
        self.wall0 = 0.0

    def start(self) -> None:
        signal.signal(signal.SIGPROF, self._tick)
        # Sampling starts after --skip seconds of wall time: a timer thread arms it.
        timer = threading.Timer(max(0.0, self.start_at - time.monotonic()), self._arm)
        timer.daemon = True
        timer.start()

    def _arm(self) -> None:
        self.cpu0 = time.process_time()
        self.wall0 = time.monotonic()
        signal.setitimer(signal.ITIMER_PROF, self.interval, self.interval)

    def _tick(self, signum: int, frame: FrameType | None) -> None:
        self.samples += 1
        if frame is None:
            return
        co = frame.f_code
        if (os.path.basename(co.co_filename), co.co_name) in IDLE:
            self.idle += 1
            return
        stack = []
        f: FrameType | None = frame
        while f is not None:
            stack.append(_frame_key(f))
            f = f.f_back
        self.stacks[tuple(reversed(stack))] += 1

    def report(self) -> str:
        stacks = dict(self.stacks)  # one C-level copy: the handler may add to it meanwhile
        busy = sum(stacks.values())
        own: Counter[str] = Counter()
        own_line: Counter[str] = Counter()
        total: Counter[str] = Counter()
        for stack, n in stacks.items():
            leaf = stack[-1]
            own[f"{_short(leaf[0])}:{leaf[1]}"] += n
            own_line[f"{_short(leaf[0])}:{leaf[2]} ({leaf[1]})"] += n
            for fn in {f"{_short(s[0])}:{s[1]}" for s in stack}:
                total[fn] += n
        cpu = time.process_time() - self.cpu0
        wall = time.monotonic() - self.wall0
        out = [
            f"process CPU {cpu:.1f} s over {wall:.1f} s ({cpu / max(wall, 1e-9):.2f} cores)",
            f"{self.samples} CPU ticks: {busy} in the event loop, {self.idle} while it waited",
            "",
            "own share of the loop's ticks (function):",
        ]
        out += [f"  {100 * n / max(busy, 1):5.1f}%  {k}" for k, n in own.most_common(40)]
        out += ["", "own share of the loop's ticks (line):"]
        out += [f"  {100 * n / max(busy, 1):5.1f}%  {k}" for k, n in own_line.most_common(40)]
        out += ["", "total share of the loop's ticks (function and what it calls):"]
        out += [f"  {100 * n / max(busy, 1):5.1f}%  {k}" for k, n in total.most_common(60)]
        return "\n".join(out) + "\n"

    def folded(self) -> str:
        lines = []
        for stack, n in Counter(dict(self.stacks)).most_common():
            lines.append(";".join(f"{_short(s[0])}:{s[1]}" for s in stack) + f" {n}")
        return "\n".join(lines) + "\n"


def _writer(sampler: Sampler, out: Path, every: float) -> None:
    while True:
        time.sleep(every)
        _write(sampler, out)


def _write(sampler: Sampler, out: Path) -> None:
    if time.monotonic() < sampler.start_at:
        return
    Path(f"{out}.txt").write_text(sampler.report())
    Path(f"{out}.folded").write_text(sampler.folded())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/shoal-profile"))
    p.add_argument("--hz", type=float, default=97.0, help="samples per second")
    p.add_argument("--skip", type=float, default=0.0, help="seconds before sampling starts")
    p.add_argument("--every", type=float, default=3.0, help="seconds between report writes")
    p.add_argument("args", nargs=argparse.REMAINDER, help="-- then shoal's arguments")
    a = p.parse_args()
    args = a.args[1:] if a.args[:1] == ["--"] else a.args
    sys.path.insert(0, str(ROOT))
    from agent.cli import main as shoal_main  # after sys.path: runs from a checkout too

    sampler = Sampler(a.hz, a.skip)
    sampler.start()
    threading.Thread(target=_writer, args=(sampler, a.out, a.every), daemon=True).start()
    try:
        return shoal_main(args)
    finally:
        _write(sampler, a.out)


if __name__ == "__main__":
    raise SystemExit(main())
