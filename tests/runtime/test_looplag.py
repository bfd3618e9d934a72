"""The loop-lag histogram, fed by the loop clock's ticker, sees a loop that was held, and reports
nothing alarming when it was not."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry, Histogram

from agent.loopclock import LoopClock
from agent.runtime.looplag import SlowCallbacks


def _histogram() -> tuple[Histogram, CollectorRegistry]:
    reg = CollectorRegistry()
    return Histogram("lag", "test", buckets=(0.05, 0.2, 1.0), registry=reg), reg


def test_a_blocked_loop_shows_as_lag() -> None:
    hist, reg = _histogram()

    async def scenario() -> None:
        clock = LoopClock(threshold=1.0, period=0.01, on_lag=hist.observe)
        await clock.start()
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # hold the loop, as a long parse would
        await asyncio.sleep(0.05)
        await clock.stop()

    asyncio.run(scenario())
    over_200ms = reg.get_sample_value("lag_count") - reg.get_sample_value("lag_bucket", {"le": "0.2"})
    assert over_200ms >= 1


def test_every_wake_up_is_observed() -> None:
    hist, reg = _histogram()

    async def scenario() -> None:
        clock = LoopClock(period=0.01, on_lag=hist.observe)
        await clock.start()
        await asyncio.sleep(0.2)
        await clock.stop()

    asyncio.run(scenario())
    assert reg.get_sample_value("lag_count") >= 3


def _burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


async def _holds_the_loop() -> None:
    await asyncio.sleep(0.01)
    _burn(0.03)  # the work the finder must name
    await asyncio.sleep(0.01)


def test_the_slow_callback_finder_names_the_coroutine_and_lines_that_held_the_loop() -> None:
    finder = SlowCallbacks(0.02)
    original = asyncio.events.Handle._run

    async def main() -> None:
        finder.install()
        try:
            await asyncio.gather(_holds_the_loop(), _holds_the_loop(), asyncio.sleep(0.05))
        finally:
            finder.uninstall()

    asyncio.run(main())
    assert asyncio.events.Handle._run is original
    [worst] = finder.report()
    first = _holds_the_loop.__code__.co_firstlineno
    assert worst["where"] == f"_holds_the_loop:{first + 1} -> _holds_the_loop:{first + 3}"
    assert worst["count"] == 2 and worst["max_cpu_ms"] >= 30
    assert finder.calls > 2 and finder.slow_cpu >= 0.06 and finder.cpu >= finder.slow_cpu
