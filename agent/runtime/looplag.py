"""How late the event loop wakes up: the one number that says whether the agent is responsive.

Scrapes, remote write, the HTTP API and (later) gossip all share one loop. If
parsing a big body or a burst of work holds it, every timer fires late, and a
peer may take a busy agent for a dead one. A task that asks to sleep for a
fixed period and measures how much later it actually woke gives that delay
directly; the histogram's p99 is what the load tests report.
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry, Histogram


def lag_histogram(registry: CollectorRegistry) -> Histogram:
    """``shoal_event_loop_lag_seconds``, one per process, in the process' registry."""
    return Histogram(
        "shoal_event_loop_lag_seconds",
        "How much later than asked the event loop ran a timer (sampled every 100 ms).",
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        registry=registry,
    )


async def monitor(histogram: Histogram, period: float = 0.1) -> None:
    """Observe the loop's lag every ``period`` seconds until cancelled."""
    while True:
        asked = time.monotonic()
        await asyncio.sleep(period)
        histogram.observe(max(0.0, time.monotonic() - asked - period))
