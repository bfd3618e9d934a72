"""The loop clock on a real event loop: stalls found by the ticker or by a look, the lag fed to
its observer, subscribers in rank order, and ``settled`` waiting for their work, not a delay."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent.loopclock import HANDOFFS, LoopClock, Stall


def test_a_blocked_loop_is_one_stall_with_its_bounds_and_the_lag_is_observed() -> None:
    async def run() -> tuple[list[Stall], list[float], LoopClock]:
        lags: list[float] = []
        clock = LoopClock(threshold=0.3, period=0.02, on_lag=lags.append)
        seen: list[Stall] = []
        clock.subscribe(seen.append)
        await clock.start()
        try:
            await asyncio.sleep(0.2)
            began = time.monotonic()
            time.sleep(0.6)  # the loop blocked, as by SIGSTOP or a CPU-bound callback
            ended = time.monotonic()
            await asyncio.sleep(0.2)
            assert seen and seen[0].began <= began + 0.05 and seen[0].ended >= ended
        finally:
            await clock.stop()
        return seen, lags, clock

    seen, lags, clock = asyncio.run(run())
    assert len(seen) == 1 and seen[0].epoch == 1 and seen[0].seconds >= 0.6
    assert max(lags) >= 0.5  # the blocked tick woke that late
    assert sum(1 for x in lags if x < 0.3) >= 5  # and the others on time
    assert clock.is_settled()


def test_short_silences_are_no_stall() -> None:
    async def run() -> int:
        clock = LoopClock(threshold=0.5, period=0.02)
        await clock.start()
        try:
            for _ in range(3):
                time.sleep(0.2)
                await asyncio.sleep(0.05)
        finally:
            await clock.stop()
        return clock.epoch

    assert asyncio.run(run()) == 0


def test_a_look_finds_the_stall_before_the_ticker_and_settled_waits_for_the_subscribers() -> None:
    """The order the queue relies on: the handoff writer's work, then the send."""
    async def run() -> list[str]:
        clock = LoopClock(threshold=0.2, period=0.05)
        events: list[str] = []
        gate = asyncio.Event()

        def writer(stall: Stall) -> object:
            events.append(f"writer heard {stall.epoch}")

            async def work() -> None:
                await gate.wait()  # as long as it takes: no timeout decides the order
                events.append("markers written")

            return work()

        def later(stall: Stall) -> None:
            events.append(f"later heard {stall.epoch}")

        clock.subscribe(later, rank=HANDOFFS + 1)
        clock.subscribe(writer, rank=HANDOFFS)
        await clock.start()
        try:
            await asyncio.sleep(0.1)
            time.sleep(0.4)
            # Right after the loop comes back, before the ticker runs: a shard about to send.
            send = asyncio.create_task(clock.settled())
            await asyncio.sleep(0.3)
            assert not send.done() and not clock.is_settled()
            events.append("gate opened")
            gate.set()
            await asyncio.wait_for(send, 2)
            events.append("sent")
        finally:
            await clock.stop()
        return events

    assert asyncio.run(run()) == [
        "writer heard 1", "later heard 1", "gate opened", "markers written", "sent",
    ]


def test_a_failing_subscriber_does_not_keep_the_stall_unsettled() -> None:
    async def run() -> tuple[int, bool]:
        clock = LoopClock(threshold=0.1, period=0.02)

        def broken(_stall: Stall) -> None:
            raise RuntimeError("a bug")

        async def boom() -> None:
            raise RuntimeError("another bug")

        heard: list[int] = []
        clock.subscribe(broken)
        clock.subscribe(lambda s: boom())
        clock.subscribe(lambda s: heard.append(s.epoch))
        await clock.start()
        time.sleep(0.2)
        await asyncio.wait_for(clock.settled(), 2)
        await clock.stop()
        return heard[0], clock.is_settled()

    assert asyncio.run(run()) == (1, True)


def test_unsubscribed_callbacks_hear_nothing_and_a_clock_alone_settles_at_once() -> None:
    async def run() -> tuple[list[int], int]:
        clock = LoopClock(threshold=0.1, period=0.02)
        heard: list[int] = []
        unsubscribe = clock.subscribe(lambda s: heard.append(s.epoch))
        unsubscribe()
        await clock.start()
        time.sleep(0.2)
        await asyncio.wait_for(clock.settled(), 1)
        await clock.stop()
        return heard, clock.epoch

    assert asyncio.run(run()) == ([], 1)


def test_a_clock_not_started_finds_no_stall_and_settles_at_once() -> None:
    """The remote-write engine's fallback outside ``shoal run``: nobody proves the loop runs, so
    a queue idle for a while is not a stalled loop."""
    async def run() -> tuple[int, bool]:
        clock = LoopClock(threshold=0.1, period=0.02)
        time.sleep(0.3)
        await asyncio.wait_for(clock.settled(), 1)
        return clock.epoch, clock.is_settled()

    assert asyncio.run(run()) == (0, True)


def test_a_threshold_not_above_the_tick_is_refused() -> None:
    with pytest.raises(ValueError, match="threshold"):
        LoopClock(threshold=0.1, period=0.1)
