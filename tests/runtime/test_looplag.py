"""The loop-lag monitor sees a loop that was held, and reports nothing alarming when it was not."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry, Histogram

from agent.runtime.looplag import monitor


def _histogram() -> tuple[Histogram, CollectorRegistry]:
    reg = CollectorRegistry()
    return Histogram("lag", "test", buckets=(0.05, 0.2, 1.0), registry=reg), reg


def test_a_blocked_loop_shows_as_lag() -> None:
    hist, reg = _histogram()

    async def scenario() -> None:
        task = asyncio.create_task(monitor(period=0.01, histogram=hist))
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # hold the loop, as a long parse would
        await asyncio.sleep(0.05)
        task.cancel()

    asyncio.run(scenario())
    over_200ms = reg.get_sample_value("lag_count") - reg.get_sample_value("lag_bucket", {"le": "0.2"})
    assert over_200ms >= 1


def test_every_wake_up_is_observed() -> None:
    hist, reg = _histogram()

    async def scenario() -> None:
        task = asyncio.create_task(monitor(period=0.01, histogram=hist))
        await asyncio.sleep(0.2)
        task.cancel()

    asyncio.run(scenario())
    assert reg.get_sample_value("lag_count") >= 3
