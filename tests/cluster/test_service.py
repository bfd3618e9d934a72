"""The cluster service's local rules on a real node: draining when behind, a hold-down to return,
a stall of the agent's loop holding ownership back, progress-stale members owning nothing."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator

from agent.cluster import Role, Settings
from agent.cluster.service import ClusterService, Options
from tests.cluster.helpers import FAST as GOSSIP
from tests.cluster.helpers import next_host
from tests.cluster.test_target_sets import until

FAST = Options(
    progress_interval=0.1, behind_checks=2, healthy_hold=1.0, drain_hold=1.0, start_grace=0.0,
    tick=0.05,
    stall_threshold=0.5, stall_hold=0.5, leave_grace=0.0,
)


def service(progress: list[tuple[int, int]]) -> ClusterService:
    """A one-member cluster whose scrape progress is whatever ``progress[0]`` holds."""
    return ClusterService(
        Settings(name="solo", bind_host=next_host(), cluster_name="svc"),
        FAST,
        scrape_progress=lambda _since: progress[0],
    )


@contextlib.asynccontextmanager
async def with_peer(progress: list[tuple[int, int]]) -> AsyncIterator[ClusterService]:
    """A service whose progress is ``progress[0]``, joined by a healthy peer: an agent drains only when another
    participant is there to take its targets."""
    # Joined over UDP and TCP push-pull (no dialer: there is no agent HTTP server here).
    svc = ClusterService(Settings(name="solo", bind_host=next_host(), cluster_name="svc", **GOSSIP),
                         FAST, dialer=None, scrape_progress=lambda _since: progress[0])
    peer = ClusterService(Settings(name="peer", bind_host=next_host(), cluster_name="svc",
                                   **GOSSIP), FAST, dialer=None,
                          scrape_progress=lambda _since: (10, 10))
    await svc.start()
    await peer.start()
    try:
        await asyncio.to_thread(peer.node.join, [svc.node.address])
        await until(lambda: len(svc.ring.names) == 2 and len(peer.ring.names) == 2, "joined")
        yield svc
    finally:
        await peer.stop()
        await svc.stop()


def test_falling_behind_drains_and_returns_only_after_a_healthy_hold() -> None:
    async def run() -> list[Role]:
        progress = [(10, 10)]
        roles: list[Role] = []
        async with with_peer(progress) as svc:

            async def watch(until: float) -> None:
                while time.monotonic() < until:
                    me = svc.node.local()
                    if me is not None and (not roles or roles[-1] is not me.role):
                        roles.append(me.role)
                    await asyncio.sleep(0.02)

            await watch(time.monotonic() + 0.5)
            assert "solo" in svc.ring.names
            progress[0] = (1, 10)  # most scrapes late: behind
            await watch(time.monotonic() + 0.8)
            assert svc.draining and svc.ring.names == ("peer",)
            # Flapping input: healthy for less than the hold, then behind again, then healthy.
            for state in [(10, 10), (1, 10), (10, 10), (1, 10)]:
                progress[0] = state
                await watch(time.monotonic() + 0.3)
            assert svc.draining
            progress[0] = (10, 10)
            await watch(time.monotonic() + 1.8)
            assert not svc.draining and "solo" in svc.ring.names
        return roles

    assert asyncio.run(run()) == [Role.PARTICIPANT, Role.DRAINING, Role.PARTICIPANT]


def test_draining_again_soon_after_returning_doubles_the_hold() -> None:
    """A starved agent that drains scrapes nothing, so it reads healthy and returns; if it falls
    behind again soon after, its next hold-down is twice as long (flap damping)."""
    async def run() -> list[float]:
        progress = [(10, 10)]
        returns: list[float] = []
        async with with_peer(progress) as svc:
            await asyncio.sleep(0.3)
            for _ in range(3):
                progress[0] = (1, 10)  # behind: drains
                while not svc.draining:
                    await asyncio.sleep(0.02)
                progress[0] = (10, 10)  # what a draining agent reads: healthy
                began = time.monotonic()
                while svc.draining:
                    await asyncio.sleep(0.02)
                returns.append(time.monotonic() - began)
        return returns

    first, second, third = asyncio.run(run())
    # healthy_hold 1 s, then 2 s, then 4 s (lower bounds only: a slow machine only adds time)
    assert first >= 0.9 and second >= 1.9 and third >= 3.9, (first, second, third)


def stalled(options: Options) -> tuple[bool, bool, bool, int, str]:
    """Ownership before, right after and 0.8 s after the service's loop blocked for 1 s."""
    async def run() -> tuple[bool, bool, bool, int, str]:
        svc = ClusterService(Settings(name="solo", bind_host=next_host(), cluster_name="svc"), options,
                             scrape_progress=lambda _since: (0, 0))
        await svc.start()
        try:
            await asyncio.sleep(0.3)
            before = svc.owns(b"k")
            time.sleep(1.0)  # the agent's loop blocked, as by SIGSTOP or a CPU-bound callback
            during = svc.owns(b"k")
            held = svc.holding_back()
            await asyncio.sleep(0.8)
            return before, during, svc.owns(b"k"), svc.stalls, held
        finally:
            await svc.stop()

    return asyncio.run(run())


def test_a_stall_long_enough_for_a_takeover_owns_nothing_until_the_hold_ends() -> None:
    # Peers demote after 1.2 s of unchanged progress here: a 1 s stall may have let them.
    before, during, after, stalls, held = stalled(dataclasses.replace(FAST, progress_timeout=1.2))
    assert (before, during, after) == (True, False, True) and stalls == 1
    assert held.startswith("resuming after a stall")


def test_a_stall_too_short_for_a_takeover_keeps_ownership() -> None:
    """No hold-down: it would make the scrape pools hand every target off, and the queues drop
    unsent samples that no other agent wrote (peers demote after 5 s of unchanged progress and
    suspect for 4 s before declaring a member dead)."""
    before, during, after, stalls, held = stalled(FAST)
    assert (before, during, after) == (True, True, True) and stalls == 1 and held == ""
