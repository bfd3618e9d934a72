"""Two real cluster services on their own sockets: target-set digests gossiped and compared,
and node-affine ownership with its fall-back to the ring."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from agent.cluster import Role, Settings
from agent.cluster.service import ClusterService, Options, target_set_digest
from tests.cluster.helpers import FAST, next_host

OPTS = Options(tick=0.05, stall_threshold=1.0, stall_hold=0.2, leave_grace=0.0,
               mismatch_grace=0.3, mismatch_log_every=0.0)
JOB = "prometheus.scrape.pods"
KEYS = [f"pods\xffhttp\xff10.0.0.{i}:8080\xff/metrics".encode() for i in range(50)]


def make(name: str, opts: Options = OPTS) -> tuple[ClusterService, CollectorRegistry]:
    reg = CollectorRegistry()
    settings = Settings(name=name, bind_host=next_host(), cluster_name="sets", **FAST)
    return ClusterService(settings, opts, registry=reg, dialer=None), reg


async def until(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")


@contextlib.asynccontextmanager
async def pair(
    opts: Options = OPTS,
) -> AsyncIterator[tuple[tuple[ClusterService, CollectorRegistry], ...]]:
    """Services a and b, started and joined; both stopped at the end."""
    (a, ra), (b, rb) = make("a", opts), make("b", opts)
    await a.start()
    await b.start()
    try:
        await asyncio.to_thread(b.node.join, [a.node.address])
        await until(lambda: len(a.ring.names) == 2 and len(b.ring.names) == 2, "joined")
        yield (a, ra), (b, rb)
    finally:
        await b.stop()
        await a.stop()


def mismatch(reg: CollectorRegistry) -> float | None:
    return reg.get_sample_value("shoal_cluster_target_set_mismatch", {"component_id": JOB})


def test_digest_is_of_the_set() -> None:
    assert target_set_digest(KEYS) == target_set_digest(reversed(KEYS + KEYS[:3]))
    assert target_set_digest(KEYS)[0] != target_set_digest(KEYS[1:])[0]
    assert target_set_digest(KEYS)[1] == 50
    # Length-prefixed: moving a byte between two keys changes the digest.
    assert target_set_digest([b"ab", b"c"])[0] != target_set_digest([b"a", b"bc"])[0]


def test_peers_that_see_other_targets_are_reported_and_converge() -> None:
    async def run() -> list[dict]:
        async with pair() as ((a, ra), (b, rb)):
            with capture_logs() as logs:
                a.report_targets(JOB, KEYS)
                b.report_targets(JOB, KEYS)
                await until(lambda: mismatch(ra) == 0 and mismatch(rb) == 0, "agree at first")
                b.report_targets(JOB, KEYS + [b"pods\xffhttp\xff10.9.9.9:8080\xff/metrics"])
                await until(lambda: mismatch(ra) == 1 and mismatch(rb) == 1, "both see it")
                assert a.mismatches[JOB].peers == {"b": "51 targets"}
                assert b.mismatches[JOB].peers == {"a": "50 targets"}
                await asyncio.sleep(0.6)  # past the grace: logged
                b.report_targets(JOB, KEYS)
                await until(lambda: mismatch(ra) == 0 and mismatch(rb) == 0, "converged")
                assert JOB not in a.mismatches
                b.forget_targets(JOB)  # b stops clustering the component: a is told it is missing
                await until(lambda: mismatch(ra) == 1, "missing seen")
                assert a.mismatches[JOB].peers == {"b": "missing"}
                assert mismatch(rb) is None  # b dropped its series
            return logs

    logs = asyncio.run(run())
    warned = [e for e in logs if e["event"].startswith("peers see other targets")]
    assert warned and warned[0]["component_id"] == JOB and warned[0]["peers"] in (
        {"b": "51 targets"}, {"a": "50 targets"})
    assert any(e["event"] == "target sets agree again" for e in logs)


def test_node_affine_owner_while_healthy_and_the_ring_otherwise() -> None:
    async def run() -> None:
        async with pair() as ((a, _), (b, _)):
            # Keys the ring gives to a, whose node is b: b scrapes them while b participates.
            keys = [k for k in KEYS if a.ring.owner(k) == "a"]
            assert keys
            for svc in (a, b):
                await until(lambda s=svc: not s.holding_back(), "not held back")
                assert all(svc.owner(k, "b") == "b" for k in keys)
                assert all(svc.owner(k, "no-such-node") == "a" for k in keys)
            assert all(b.owns(k, "b") and not a.owns(k, "b") for k in keys)
            b.node.set_role(Role.DRAINING)  # b unhealthy: its node's targets fall back to the ring
            await until(lambda: a.ring.names == ("a",), "b out of a's ring")
            assert all(a.owns(k, "b") and a.owner(k, "b") == "a" for k in keys)
            b.node.set_role(Role.PARTICIPANT)
            await until(lambda: len(a.ring.names) == 2, "b back")
            assert not any(a.owns(k, "b") for k in keys)

    asyncio.run(run())
