"""The scheduled hand-over: a growing ring share applies at an announced instant, for everyone.

Without processes: the plan of rings over time (owner before, at and after ``ramp_at``),
the wire fields (older agents without them read as "applies now"; bad values refused or,
too far ahead, clamped and counted), a real service answering for a slot's time from a
real peer's gossip, and two real scrape pools sharing one scheduling that hand a real
HTTP target over at a switch with every slot scraped exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from agent import labels as L
from agent.cluster import Node, Settings
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
from agent.cluster.ring import Plan, Ring, plan
from agent.cluster.service import ClusterService, Options
from agent.scrape.config import ScrapeConfig
from agent.scrape.ownership import target_key
from agent.scrape.pool import ScrapePool
from agent.storage import is_handoff_nan, is_stale_nan
from tests.cluster.helpers import FAST, next_host
from tests.cluster.test_target_sets import until
from tests.scrape.server import Collector
from tests.targets import Target

KEYS = [f"job\xffhttp\xff10.0.{i // 256}.{i % 256}:9100\xff/metrics".encode() for i in range(2_000)]
NAMES = ["a", "b", "c", "d"]


def schedule(now: float, at: float, before: float, after: float) -> Plan:
    """d grows from ``before`` to ``after`` at ``at``; the others hold their whole share."""
    d = Progress(ramp_left=1.0 - after, ramp_at=at, ramp_from=before)
    return plan(NAMES, b"s", {"d": d.weight_at}, [at], now)


def test_the_owner_changes_exactly_at_the_switch() -> None:
    t = 1_000_000.0
    p = schedule(t - 5, t, 0.25, 0.5)
    old, new = Ring(NAMES, b"s", {"d": 0.25}), Ring(NAMES, b"s", {"d": 0.5})
    assert p.switches() == (t,)
    moved = [k for k in KEYS if old.owner(k) != new.owner(k)]
    assert moved and all(new.owner(k) == "d" for k in moved)  # only to the grower
    for k in KEYS:
        assert p.owner(k) == p.owner(k, at=t - 1e-6) == old.owner(k)
        assert p.owner(k, at=t) == p.owner(k, at=t + 100) == new.owner(k)
    # Once the instant has passed the new ring is the current one and nothing is pending.
    later = schedule(t, t, 0.25, 0.5)
    assert later.switches() == () and later.current.same_as(new)
    assert not later.same_as(p) and schedule(t - 5, t, 0.25, 0.5).same_as(p)


def test_a_shrinking_or_unscheduled_share_applies_now() -> None:
    # ramp_at 0 (an older agent, or a share that shrank): the announced share at every time.
    p = Progress(ramp_left=0.75, ramp_from=1.0)
    assert p.weight_at(0.0) == p.weight_at(time.time()) == 0.25
    assert plan(NAMES, b"s", {"d": p.weight_at}, [p.ramp_at], time.time()).switches() == ()


def test_a_member_at_weight_zero_owns_nothing_even_when_nobody_else_accepts() -> None:
    """Two members ramping and one handing over (or not yet taking its first share): the keys
    neither ramping member accepts go to the top-ranked one with a share, never to the member
    at 0, which scrapes nothing (seen in a rolling restart: slots missed)."""
    ring = Ring(["a", "b", "c"], b"s", {"a": 0.125, "b": 0.125, "c": 0.0})
    owners = Counter(ring.owner(k) for k in KEYS)
    assert owners["c"] == 0 and sum(owners.values()) == len(KEYS) and owners["a"] and owners["b"]
    # Everyone at 0 (a cold start) still splits every key, by rank.
    cold = Ring(["a", "b", "c"], b"s", {"a": 0.0, "b": 0.0, "c": 0.0})
    assert all(cold.owner(k) == Ring(["a", "b", "c"], b"s").owner(k) for k in KEYS)


def state(p: Progress) -> State:
    return State("node-a", "127.0.0.1:7946", 3, Role.PARTICIPANT, p)


def test_the_switch_fields_round_trip_and_an_older_agent_reads_as_now() -> None:
    sent = Progress(ramp_left=0.5, ramp_at=1_700_000_000.25, ramp_from=0.25)
    (got,) = decode_packet(encode_packet(packet_header("c"), [encode_message(state(sent))]), "c")
    assert isinstance(got, State) and got.progress == sent
    old = _PB["Msg"](alive=_PB["State"](
        name="old", addr="127.0.0.1:1", incarnation=1, role=0,
        progress=_PB["Progress"](ramp_left=0.5, timestamp=1.0),
    )).SerializeToString()
    (got,) = decode_packet(encode_packet(packet_header("c"), [old]), "c")
    assert isinstance(got, State) and got.progress.ramp_at == 0.0
    assert got.progress.weight_at(0.0) == got.progress.weight_at(2e9) == 0.5


@pytest.mark.parametrize(
    "bad",
    [
        Progress(ramp_at=float("nan")),
        Progress(ramp_at=float("inf")),
        Progress(ramp_at=-1.0),
        Progress(ramp_from=1.5),
        Progress(ramp_from=float("nan")),
    ],
)
def test_bad_switch_fields_are_refused(bad: Progress) -> None:
    pkt = encode_packet(packet_header("c"), [encode_message(state(bad))])
    with pytest.raises(BadMessage) as err:
        decode_packet(pkt, "c")
    assert err.value.reason == "invalid"


RULES = Options(tick=0.05, stall_threshold=1.0, stall_hold=0.2, leave_grace=0.0,
                progress_interval=0.1, start_grace=0.0, ramp_ahead_max=20.0)


@contextlib.asynccontextmanager
async def service_and_peer() -> AsyncIterator[tuple[ClusterService, Node]]:
    """A real service "a" and a plain node "b" whose progress the test writes by hand."""
    a = ClusterService(Settings(name="a", bind_host=next_host(), cluster_name="handover", **FAST),
                       RULES, dialer=None)
    await a.start()
    b = Node(Settings(name="b", bind_host=next_host(), cluster_name="handover",
                      metadata_min_interval=0.05, **FAST))
    await asyncio.to_thread(b.start)
    try:
        await asyncio.to_thread(b.join, [a.node.address])
        await until(lambda: a.ring.names == ("a", "b"), "b in a's ring")
        yield a, b
    finally:
        await asyncio.to_thread(b.stop)
        await a.stop()


def test_a_service_answers_for_a_slot_time_and_clamps_a_switch_far_ahead() -> None:
    async def run() -> None:
        async with service_and_peer() as (a, b):
            # b, like an agent before this field existed, announces half its share: now.
            b.set_progress(Progress(ramp_left=0.5, timestamp=time.time()))
            await until(lambda: a.ring.partial.get("b") == 0.5, "b at half, now")
            assert a.switches() == ()
            # b grows to its whole share from an instant three seconds ahead.
            at = time.time() + 3.0
            b.set_progress(Progress(ramp_left=0.0, ramp_at=at, ramp_from=0.5,
                                    timestamp=time.time()))
            await until(lambda: a.switches() == (at,), "b's switch heard")
            half, whole = Ring(["a", "b"], a.settings.seed, {"b": 0.5}), Ring(["a", "b"],
                                                                              a.settings.seed)
            moving = [k for k in KEYS if half.owner(k) != whole.owner(k)]
            assert moving
            for k in moving:
                assert a.owner(k) == a.owner(k, at=at - 0.001) == "a" and a.owns(k)
                assert a.owner(k, at=at) == "b" and not a.owns(k, at=at)
            await until(lambda: a.switches() == () and "b" not in a.ring.partial, "switched")
            assert all(a.owner(k) == "b" for k in moving)
            # A switch time far ahead (a bad clock or value) is pulled in to ramp_ahead_max.
            clamped = a.node.metrics.ramp_clamped._value.get()
            b.set_progress(Progress(ramp_left=0.0, ramp_at=time.time() + 1e6, ramp_from=0.5,
                                    timestamp=time.time()))
            await until(lambda: len(a.switches()) == 1, "far switch heard")
            assert a.switches()[0] <= time.time() + RULES.ramp_ahead_max
            assert a.node.metrics.ramp_clamped._value.get() == clamped + 1

    asyncio.run(run())


class PlanShare:
    """One agent's ownership over a plan both pools share (the service's ``owns``/``owner``)."""

    def __init__(self, name: str, holder: list[Plan]) -> None:
        self.name, self.holder = name, holder

    def owns(self, key: bytes, at: float | None = None) -> bool:
        return self.holder[0].owner(key, at) == self.name

    def owner(self, key: bytes) -> str:
        return self.holder[0].owner(key) or ""

    def switches(self) -> tuple[float, ...]:
        return self.holder[0].switches()


INTERVAL = 1.0
SEED = 99


def test_two_pools_hand_a_target_over_at_the_switch_scraping_each_slot_once() -> None:
    """Pools "a" and "b" share the cluster seed and one plan: b grows from nothing to its whole
    share at an instant. Every target b gains is scraped by a up to the slot before it and by
    b from the slot at it: no slot twice, none missed; a's handoff markers keep its last
    scrape (cut-off = its timestamp)."""
    targets = [Target(f"m {i}\n").start() for i in range(10)]
    cfg = ScrapeConfig(job_name="h", scrape_interval=INTERVAL, scrape_timeout=0.8)

    async def run() -> tuple[float, dict[str, Collector], list[str]]:
        start = time.time()
        at = start + 2.5 * INTERVAL
        b_share = Progress(ramp_left=0.0, ramp_at=at, ramp_from=0.0)
        holder = [plan(["a", "b"], b"seed", {"b": b_share.weight_at}, [at], start)]
        found = [L.from_dict({"__address__": t.address}) for t in targets]
        keys = {t.address: target_key(L.from_dict({"job": "h", "__scheme__": "http",
                                                   "__address__": t.address,
                                                   "__metrics_path__": "/metrics"}))
                for t in targets}
        moving = [a for a, k in keys.items() if holder[0].owner(k, at) == "b"]
        colls = {n: Collector() for n in ("a", "b")}
        pools = {n: ScrapePool(cfg, colls[n], seed=SEED, ownership=PlanShare(n, holder))
                 for n in ("a", "b")}
        for p in pools.values():
            p.sync(found)
        # b runs a loop for every target it gains before the switch: it exists before the slot.
        assert {lp.target.url for lp in pools["b"]._loops.values()} == {
            f"http://{a}/metrics" for a in moving}
        # Until the switch they are shown as a's, not as scraped here.
        assert pools["b"].targets() == []
        assert {t.owner for t in pools["b"].elsewhere_targets()} == {"a"}
        await asyncio.sleep(at - time.time() + 0.3)
        holder[0] = plan(["a", "b"], b"seed", {"b": b_share.weight_at}, [at], time.time())
        for p in pools.values():  # the service's notification when the switch has passed
            p.rebalance()
        await asyncio.sleep(3 * INTERVAL)
        for p in pools.values():
            await p.stop()
        return at, colls, moving

    try:
        at, colls, moving = asyncio.run(run())
    finally:
        for t in targets:
            t.stop()
    assert moving, "the seed gives b some targets"
    for addr in moving:
        ts = {n: sorted(ts for lab, ts, v in samples(colls[n])
                        if dict(lab).get("instance") == addr and dict(lab)["__name__"] == "up"
                        and not is_stale_nan(v) and not is_handoff_nan(v))
              for n in ("a", "b")}
        both = sorted(ts["a"] + ts["b"])
        assert ts["a"] and ts["b"], (addr, ts)
        assert max(ts["a"]) < at * 1000 <= min(ts["b"]), (addr, ts, at)
        gaps = [y - x for x, y in zip(both, both[1:], strict=False)]
        assert all(0.5 * INTERVAL * 1000 < g < 1.5 * INTERVAL * 1000 for g in gaps), (addr, both)
        cut = [ts_ for lab, ts_, v in samples(colls["a"])
               if is_handoff_nan(v) and dict(lab).get("instance") == addr]
        assert cut and set(cut) == {max(ts["a"])}, (addr, cut, ts["a"])


def samples(coll: Collector) -> list[tuple[tuple, int, float]]:
    return [s for b in coll.batches for s in zip(b.labels, b.timestamps, b.values, strict=True)]
