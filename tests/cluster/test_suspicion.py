"""Lifeguard's suspicion timeout and awareness score, as pure rules and as a live timer."""

from __future__ import annotations

import asyncio

import pytest

from agent.cluster.awareness import Awareness
from agent.cluster.settings import Settings
from agent.cluster.suspicion import Suspicion, remaining


def test_timeout_shrinks_from_max_to_min_with_confirmations() -> None:
    lo, hi = 4.0, 12.0
    values = [remaining(n, 2, 0.0, lo, hi) for n in range(3)]
    assert values[0] == hi and values[2] == lo
    assert values[0] > values[1] > values[2]
    assert remaining(5, 2, 0.0, lo, hi) == lo  # never below the minimum
    assert remaining(0, 0, 1.0, lo, hi) == lo - 1.0  # nobody to confirm: the minimum at once


def test_settings_bounds_follow_memberlist() -> None:
    s = Settings(name="a")
    assert s.suspicion_bounds(5) == (4.0, 12.0)
    lo, hi = s.suspicion_bounds(100)
    assert lo == 8.0 and hi == 24.0
    assert s.retransmit_limit(5) == 4 and s.retransmit_limit(100) == 12


def test_settings_refuse_nonsense_with_reasons() -> None:
    with pytest.raises(ValueError, match="probe_timeout"):
        Settings(name="a", probe_timeout=2.0, probe_interval=1.0)
    with pytest.raises(ValueError, match="16, 24 or 32"):
        Settings(name="a", keys=(b"short",))
    with pytest.raises(ValueError, match="name"):
        Settings(name="")


def test_confirmations_are_counted_once_per_member_and_bring_the_deadline_in() -> None:
    async def run() -> tuple[list[bool], float, float]:
        loop = asyncio.get_running_loop()
        fired = loop.create_future()
        start = loop.time()
        s = Suspicion(loop, "a", 2, 0.2, 30.0, lambda: fired.set_result(loop.time()))
        results = [s.confirm("a"), s.confirm("b"), s.confirm("b"), s.confirm("c"), s.confirm("d")]
        when = await asyncio.wait_for(fired, 10)
        return results, start, when

    results, start, when = asyncio.run(run())
    assert results == [False, True, False, True, False]
    assert when - start < 30.0  # it fired at the minimum, long before the lone-accuser maximum


def test_awareness_is_bounded_and_scales_timeouts() -> None:
    a = Awareness(8)
    assert a.scale(0.5) == 0.5
    assert a.apply(3) == 3 and a.scale(0.5) == 2.0
    assert a.apply(100) == 7
    assert a.apply(-100) == 0
