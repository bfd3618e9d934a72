"""The rules that demote a starved member and bring it back gradually, without processes:
the weighted ring (a returning member's keys come only from the others, and grow with its
weight), the one publication rule every peer applies, the canary, and the ramp field on the
wire (an older agent, which does not send it, counts as holding its full share)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from agent.cluster import Settings
from agent.cluster.member import Progress, Role
from agent.cluster.messages import (
    _PB,
    BadMessage,
    State,
    decode_packet,
    encode_message,
    encode_packet,
    packet_header,
)
from agent.cluster.ring import Ring
from agent.cluster.service import ClusterService, Options, behind, canary
from tests.cluster.helpers import FAST, next_host
from tests.cluster.test_target_sets import KEYS, until

RING_KEYS = [f"job/http/10.0.{i // 256}.{i % 256}:9100/metrics" for i in range(6_000)]
NAMES = ["a", "b", "c", "d"]


def owners(ring: Ring) -> dict[str, str | None]:
    return {k: ring.owner(k) for k in RING_KEYS}


def test_full_weights_are_the_plain_ring() -> None:
    assert owners(Ring(NAMES, b"s", {n: 1.0 for n in NAMES})) == owners(Ring(NAMES, b"s"))


def test_weight_zero_is_absent_and_a_ramp_takes_keys_only_from_the_others() -> None:
    without = owners(Ring(NAMES[:-1], b"s"))
    full = owners(Ring(NAMES, b"s"))
    assert owners(Ring(NAMES, b"s", {"d": 0.0})) == without
    taken_before: set[str] = set()
    for w in (0.125, 0.25, 0.5, 0.75):
        now = owners(Ring(NAMES, b"s", {"d": w}))
        taken = {k for k, o in now.items() if o == "d"}
        # Only keys that are d's in the full ring, and never fewer as the weight grows.
        assert all(full[k] == "d" for k in taken)
        assert taken_before <= taken
        # Every other key stays where it is without d: nothing moves between the others.
        assert all(now[k] == without[k] for k in RING_KEYS if k not in taken)
        share = len(taken) / sum(1 for o in full.values() if o == "d")
        assert abs(share - w) < 0.05, (w, share)
        taken_before = taken


def test_everyone_ramping_still_owns_every_key_once() -> None:
    counts = Counter(owners(Ring(NAMES, b"s", {n: 0.0 for n in NAMES})).values())
    assert None not in counts and sum(counts.values()) == len(RING_KEYS)
    # With nobody accepting, the top-ranked member keeps the key: the plain ring's split.
    assert counts == Counter(owners(Ring(NAMES, b"s")).values())


def test_weights_of_members_not_in_the_ring_are_ignored() -> None:
    ring = Ring(["a", "b"], b"", {"c": 0.1, "a": 1.5, "b": -1.0})
    assert ring.partial == {"b": 0.0}


OPTS = Options()


@pytest.mark.parametrize(
    ("progress", "is_behind"),
    [
        (Progress(), False),  # nothing due (draining, or no targets): not behind
        (Progress(scrapes_on_time=50, scrapes_due=50, loop_lag=0.2), False),
        (Progress(scrapes_on_time=41, scrapes_due=50), False),  # a few ticks missed
        (Progress(scrapes_on_time=39, scrapes_due=50), True),
        (Progress(scrapes_on_time=50, scrapes_due=50, loop_lag=1.5), True),
    ],
)
def test_one_rule_for_a_publication(progress: Progress, is_behind: bool) -> None:
    assert behind(progress, OPTS) is is_behind


def test_the_canary_reads_near_one_on_an_idle_thread() -> None:
    # Not a timing assertion: a spin gets at least some of its wall time on any machine.
    assert 0.0 < canary(0.005) <= 1.0


RULES = Options(tick=0.05, stall_threshold=1.0, stall_hold=0.2, leave_grace=0.0,
                progress_interval=0.1, behind_checks=4, drain_hold=0.5, canary_cpu=0.001,
                ramp_first=0.25, ramp_step=0.5, ramp_grace=0.1, start_grace=0.0)


@contextlib.asynccontextmanager
async def two(progress: dict[str, tuple[int, int]]) -> AsyncIterator[tuple[ClusterService, ...]]:
    """Real services a and b on their own sockets, joined, whose scrape figures are
    ``progress[name]``; progress published ten times a second so peers see every one."""
    services = []
    for name in ("a", "b"):
        settings = Settings(name=name, bind_host=next_host(), cluster_name="starve",
                            metadata_min_interval=0.1, **FAST)
        svc = ClusterService(settings, RULES, dialer=None,
                             scrape_progress=lambda _since, n=name: progress[n])
        await svc.start()
        services.append(svc)
    a, b = services
    try:
        await asyncio.to_thread(b.node.join, [a.node.address])
        await until(lambda: len(a.ring.names) == 2 and len(b.ring.names) == 2, "joined")
        yield a, b
    finally:
        await b.stop()
        await a.stop()


def weight_of(svc: ClusterService, name: str) -> float:
    """The weight ``svc``'s ring gives ``name``: 0 when out of it."""
    return svc.ring.partial.get(name, 1.0) if name in svc.ring.names else 0.0


def test_a_member_behind_leaves_every_ring_and_ramps_back() -> None:
    progress = {"a": (10, 10), "b": (10, 10)}

    async def run() -> list[float]:
        async with two(progress) as (a, b):
            progress["b"] = (3, 10)  # b's loop starts under a third of its ticks on time
            await until(lambda: weight_of(a, "b") == 0.0 and weight_of(b, "b") == 0.0, "b out")
            assert all(a.owns(k) and not b.owns(k) for k in KEYS)
            seen: list[float] = []
            progress["b"] = (10, 10)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (not seen or seen[-1] < 1.0):
                w = weight_of(a, "b")
                if not seen or seen[-1] != w:
                    seen.append(w)
                # Whatever the weights, every key has exactly one owner in a's view.
                assert all(a.owner(k) in ("a", "b") for k in KEYS[:10])
                await asyncio.sleep(0.02)
            return seen

    seen = asyncio.run(run())
    # Out, then ramp_first (a quarter here) of its share, doubled while healthy, then all of it.
    assert seen[0] == 0.0 and seen[-1] == 1.0, seen
    assert 0.0 < seen[1] < 1.0 and seen == sorted(seen), seen


def test_when_most_of_the_cluster_is_behind_nobody_is_demoted_or_drains() -> None:
    progress = {"a": (10, 10), "b": (10, 10)}

    async def run() -> None:
        async with two(progress) as (a, b):
            progress.update(a=(3, 10), b=(3, 10))  # both behind: an overload, not a starvation
            await asyncio.sleep(1.5)
            assert not a.draining and not b.draining
            assert a.ring.names == ("a", "b") == b.ring.names and not a.demoted

    asyncio.run(run())


def state(p: Progress) -> State:
    return State("node-a", "127.0.0.1:7946", 3, Role.PARTICIPANT, p)


def test_ramp_left_round_trips() -> None:
    pkt = encode_packet(packet_header("c"), [encode_message(state(Progress(ramp_left=0.875)))])
    (got,) = decode_packet(pkt, "c")
    assert isinstance(got, State) and got.progress.ramp_left == 0.875


def test_an_older_agent_without_the_field_holds_its_full_share() -> None:
    """Version 1 as first shipped had no field 7: its progress decodes to ramp_left 0."""
    msg = _PB["Msg"](alive=_PB["State"](
        name="old", addr="127.0.0.1:1", incarnation=1, role=0,
        progress=_PB["Progress"](on_time=3, due=3, timestamp=1.0),
    )).SerializeToString()
    (got,) = decode_packet(encode_packet(packet_header("c"), [msg]), "c")
    assert isinstance(got, State) and got.progress.ramp_left == 0.0
    assert 1.0 - got.progress.ramp_left == 1.0


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), float("inf")])
def test_a_ramp_outside_zero_to_one_is_refused(bad: float) -> None:
    pkt = encode_packet(packet_header("c"), [encode_message(state(Progress(ramp_left=bad)))])
    with pytest.raises(BadMessage) as err:
        decode_packet(pkt, "c")
    assert err.value.reason == "invalid"


def test_a_lone_agent_behind_never_drains() -> None:
    """Draining the only participant would leave every target unscraped: it keeps going."""
    progress = {"solo": (3, 10)}  # a third of its ticks on time, from the start

    async def run() -> None:
        settings = Settings(name="solo", bind_host=next_host(), cluster_name="starve",
                            metadata_min_interval=0.1, **FAST)
        svc = ClusterService(settings, RULES, dialer=None,
                             scrape_progress=lambda _since: progress["solo"])
        await svc.start()
        try:
            await asyncio.sleep(1.5)  # 15 publications, all behind; behind_checks is 4
            assert not svc.draining and svc.ring.names == ("solo",)
            assert all(svc.owns(k) for k in KEYS)
        finally:
            await svc.stop()

    asyncio.run(run())
