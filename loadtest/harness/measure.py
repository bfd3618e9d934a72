"""What an agent costs, read from /proc, and what it says it did, read from its /metrics.

/proc is the judge every agent answers to equally: CPU is utime+stime of the
agent's whole process tree (threads included; children that already exited
through cutime/cstime), memory is the tree's resident set. A background thread
samples once a second; steady RSS is the median of the last part of the window
so a start-up spike does not count as the steady state, and peak is the
largest of the samples and the kernel's own high-water mark.
"""

from __future__ import annotations

import os
import re
import statistics
import threading
import time
from dataclasses import dataclass, field

import httpx

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _children_of() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def process_tree(root: int) -> list[int]:
    """``root`` and every descendant alive now."""
    tree = _children_of()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(tree.get(pid, ()))
    return out


def cpu_seconds(pid: int) -> float:
    """utime+stime of one process (all threads) plus its reaped children."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        stat = fh.read()
    fields = stat[stat.rfind(b")") + 2 :].split()
    # fields[0] is state (field 3); utime..cstime are fields 14..17.
    return sum(int(x) for x in fields[11:15]) / CLK_TCK


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm", "rb") as fh:
        return int(fh.read().split()[1]) * PAGE


def hwm_bytes(pid: int) -> int:
    """The kernel's peak RSS for one process (VmHWM)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class Sample:
    t: float
    cpu: float
    rss: int


@dataclass
class Sampler:
    """Samples CPU and RSS of a process tree every ``period`` seconds in a thread."""

    root: int
    period: float = 1.0
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def take(self) -> Sample:
        cpu = 0.0
        rss = 0
        for pid in process_tree(self.root):
            try:
                c = cpu_seconds(pid)
                r = rss_bytes(pid)
            except (OSError, ValueError, IndexError):
                continue
            cpu += c
            rss += r
        s = Sample(time.monotonic(), cpu, rss)
        self.samples.append(s)
        return s

    def start(self) -> None:
        self.take()
        self._thread = threading.Thread(target=self._run, daemon=True, name="sampler")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.take()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            self.take()
        except OSError:
            pass

    def window(self, t0: float, t1: float) -> list[Sample]:
        return [s for s in self.samples if t0 <= s.t <= t1]

    def cpu_between(self, t0: float, t1: float) -> tuple[float, float]:
        """(CPU seconds, wall seconds) between the samples closest to t0 and t1."""
        w = self.window(t0 - self.period, t1 + self.period) or self.samples
        a = min(w, key=lambda s: abs(s.t - t0))
        b = min(w, key=lambda s: abs(s.t - t1))
        return b.cpu - a.cpu, max(b.t - a.t, 1e-9)

    def rss_steady(self, t0: float, t1: float, tail: float = 0.5) -> int:
        """Median RSS over the last ``tail`` fraction of the window."""
        w = self.window(t0, t1)
        if not w:
            return 0
        start = t1 - (t1 - t0) * tail
        last = [s.rss for s in w if s.t >= start] or [w[-1].rss]
        return int(statistics.median(last))

    def rss_peak(self) -> int:
        peak = max((s.rss for s in self.samples), default=0)
        try:
            peak = max(peak, hwm_bytes(self.root))
        except OSError:
            pass
        return peak


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy (or stolen by the host) so far.

    Beside the agent's and the load's own CPU this shows whether something
    else (another user's test run) shared the machine during a window.
    """
    with open("/proc/stat") as fh:
        first = fh.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in first[1:9])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def self_cpu_seconds() -> float:
    """The harness's own CPU (all its threads)."""
    return cpu_seconds(os.getpid())


_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse_metrics(text: str) -> dict[str, float]:
    """Self-metrics summed over their label sets, by name (``name{le=...}`` keys too)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        m = _LINE.match(line)
        if m is None:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        name = m.group(1)
        out[name] = out.get(name, 0.0) + value
    return out


def fetch_text(url: str) -> str:
    return httpx.get(url, timeout=10).text


def fetch_metrics(url: str) -> dict[str, float]:
    return parse_metrics(fetch_text(url))
