"""How late the event loop wakes up: the one number that says whether the agent is responsive.

Scrapes, remote write, the HTTP API and (later) gossip all share one loop. If
parsing a big body or a burst of work holds it, every timer fires late, and a
peer may take a busy agent for a dead one. A task that asks to sleep for a
fixed period and measures how much later it actually woke gives that delay
directly; the histogram's p99 is what the load tests report. That task is the
ticker of the process' one loop clock (agent/loopclock.py), which also finds
stalls of the loop for the cluster and the remote-write queues; ``shoal run``
hands it this histogram's ``observe``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from prometheus_client import CollectorRegistry, Histogram


def lag_histogram(registry: CollectorRegistry) -> Histogram:
    """``shoal_event_loop_lag_seconds``, one per process, in the process' registry."""
    return Histogram(
        "shoal_event_loop_lag_seconds",
        "How much later than asked the event loop ran a timer (sampled every 100 ms).",
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        registry=registry,
    )


_ASYNCIO = asyncio.__path__[0]


class SlowCallbacks:
    """A profiling aid: which callbacks hold the loop, by the CPU time each one took.

    Opt-in (``SHOAL_SLOW_CALLBACKS=<seconds>`` for ``shoal run``): every callback the
    loop runs is timed with the thread's CPU clock, which a busy machine does not
    inflate as it does wall time, and those over ``threshold`` are tallied by
    where they ran (a task's coroutine and the lines it resumed at and suspended
    at, or the callback's name). ``report`` gives the worst, and ``shoal run``
    logs it every ``period`` seconds. asyncio's own debug mode finds the same
    callbacks by wall time, at a cost that distorts the load being measured.
    """

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.calls = 0
        self.cpu = 0.0  # CPU seconds in all callbacks
        self.slow_cpu = 0.0  # ... in those over the threshold
        self.worst: dict[str, list[float]] = {}  # where -> [count, total cpu, max cpu, max wall]
        self._original: Any = None

    def install(self) -> None:
        original = self._original = asyncio.events.Handle._run
        finder = self

        def _run(handle: asyncio.events.Handle) -> None:
            before = _where(handle)
            c0, w0 = time.thread_time(), time.perf_counter()
            original(handle)
            cpu = time.thread_time() - c0
            finder.calls += 1
            finder.cpu += cpu
            if cpu >= finder.threshold:
                finder.record(f"{before} -> {_where(handle, after=True)}", cpu,
                              time.perf_counter() - w0)

        asyncio.events.Handle._run = _run  # type: ignore[method-assign]

    def uninstall(self) -> None:
        if self._original is not None:
            asyncio.events.Handle._run = self._original  # type: ignore[method-assign]
            self._original = None

    def record(self, where: str, cpu: float, wall: float) -> None:
        self.slow_cpu += cpu
        w = self.worst.setdefault(where, [0, 0.0, 0.0, 0.0])
        w[0] += 1
        w[1] += cpu
        w[2] = max(w[2], cpu)
        w[3] = max(w[3], wall)

    def report(self, top: int = 12) -> list[dict[str, Any]]:
        """The callbacks over the threshold that took the most CPU in all, worst first."""
        rows = sorted(self.worst.items(), key=lambda kv: -kv[1][1])[:top]
        return [
            {"where": k, "count": int(v[0]), "cpu_s": round(v[1], 3),
             "max_cpu_ms": round(v[2] * 1000, 1), "max_wall_ms": round(v[3] * 1000, 1)}
            for k, v in rows
        ]


def _where(handle: asyncio.events.Handle, after: bool = False) -> str:
    """A task's coroutine and line (where it resumes, or ``after`` where it suspended)."""
    cb = handle._callback  # type: ignore[attr-defined]
    owner = getattr(cb, "__self__", None)
    if isinstance(owner, asyncio.Task):
        # The innermost awaiting coroutine outside asyncio itself: where the work happened.
        coro: Any = owner.get_coro()
        found = f"{getattr(coro, '__qualname__', coro)}:{'done' if after else '?'}"
        while coro is not None and getattr(coro, "cr_frame", None) is not None:
            frame = coro.cr_frame
            if not frame.f_code.co_filename.startswith(_ASYNCIO):
                found = f"{coro.__qualname__}:{frame.f_lineno}"
            coro = getattr(coro, "cr_await", None)
        return found
    if after:
        return "."
    return getattr(cb, "__qualname__", None) or type(cb).__name__


async def report_slow_callbacks(finder: SlowCallbacks, log: Any, period: float = 10.0) -> None:
    """Log the finder's tally every ``period`` seconds until cancelled."""
    while True:
        await asyncio.sleep(period)
        log.info("slow callbacks", calls=finder.calls, cpu_s=round(finder.cpu, 3),
                 slow_cpu_s=round(finder.slow_cpu, 3), threshold_s=finder.threshold,
                 worst=finder.report())
