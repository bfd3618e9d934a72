"""Shared targets: a pool scrapes only what it owns, hands moved targets over without stale markers,
and asks before every scrape."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from agent import labels as L
from agent.scrape.ownership import target_key
from agent.scrape.pool import ScrapePool
from agent.scrape.target import populate_labels
from agent.storage import is_handoff_nan
from tests.scrape.server import Collector, Exporter
from tests.scrape.test_pool import IV, cfg, stale_series, tg, until, ups


class Share:
    """An ownership a test changes by hand: the set of addresses this agent owns."""

    def __init__(self, mine: set[str]) -> None:
        self.mine = mine
        self.asked = 0

    def owns(self, key: bytes, at: float | None = None) -> bool:
        self.asked += 1
        return any(a.encode() in key.split(b"\xff") for a in self.mine)

    def owner(self, key: bytes) -> str:
        return "self" if self.owns(key) else "agent-b"

    def switches(self) -> tuple[float, ...]:
        return ()  # moves happen at once, by hand


@pytest.fixture
def exporters() -> Iterator[list[Exporter]]:
    es = [Exporter().start() for _ in range(2)]
    for i, e in enumerate(es):
        e.set(body=f'a{{n="{i}"}} {i}\n')
    yield es
    for e in es:
        e.stop()


def test_only_owned_targets_are_scraped_and_the_rest_name_their_owner(exporters):
    a, b = (e.address for e in exporters)

    async def go() -> None:
        coll = Collector()
        pool = ScrapePool(cfg(), coll, seed=7, ownership=Share({a}))
        pool.sync([tg(a), tg(b)])
        await until(lambda: len(ups(coll).get(a, [])) >= 3)
        assert b not in ups(coll)
        assert [(dict(t.labels)["__address__"], t.owner) for t in pool.elsewhere_targets()] == [(b, "agent-b")]
        assert [t.scrape_url for t in pool.targets()] == [f"http://{a}/metrics"]
        await pool.stop()

    asyncio.run(go())


def test_a_target_moved_away_stops_without_stale_markers_and_one_gained_starts(exporters):
    a, b = (e.address for e in exporters)

    async def go() -> None:
        coll = Collector()
        share = Share({a})
        pool = ScrapePool(cfg(), coll, seed=7, ownership=share)
        pool.sync([tg(a), tg(b)])
        await until(lambda: len(ups(coll).get(a, [])) >= 2)
        share.mine = {b}
        pool.rebalance()
        await until(lambda: len(ups(coll).get(b, [])) >= 2)
        scraped_a = len(ups(coll)[a])
        await asyncio.sleep(IV * 3)  # past the ~2 intervals after which a vanished target goes stale
        assert len(ups(coll)[a]) == scraped_a
        assert stale_series(coll) == set()
        assert pool.moved_away == 1
        # A target that leaves discovery while owned still goes stale, as without clustering.
        pool.sync([tg(a)])
        await until(lambda: any(dict(lab)["instance"] == b for lab in stale_series(coll)), timeout=IV * 8)
        await pool.stop()

    asyncio.run(go())


def test_ownership_is_asked_before_every_scrape(exporters):
    a = exporters[0].address

    async def go() -> None:
        coll = Collector()
        share = Share({a})
        pool = ScrapePool(cfg(), coll, seed=7, ownership=share)
        pool.sync([tg(a)])
        await until(lambda: len(ups(coll).get(a, [])) >= 2)
        share.mine = set()  # the cluster moved it, and this pool has not been told yet
        seen = len(ups(coll)[a])
        (loop,) = pool._loops.values()
        await until(lambda: loop.skipped_not_owned >= 2)
        assert len(ups(coll)[a]) <= seen + 1  # at most the scrape already in flight
        await pool.stop()

    asyncio.run(go())


def test_the_key_is_the_endpoint_not_every_label():
    c = cfg()
    one = populate_labels(tg("10.0.0.1:9100", pod="p-1", team="x"), c)
    two = populate_labels(tg("10.0.0.1:9100", pod="p-1", team="y"), c)
    other_path = populate_labels(tg("10.0.0.1:9100", __metrics_path__="/probe"), c)
    param = populate_labels(tg("10.0.0.1:9100", __param_module="icmp"), c)
    assert one is not None and two is not None and other_path is not None and param is not None
    assert target_key(one) == target_key(two)
    assert len({target_key(one), target_key(other_path), target_key(param)}) == 3
    assert target_key(L.from_dict({"job": "a\xffb"})) != target_key(L.from_dict({"job": "a", "__scheme__": "b"}))


def handoffs(coll: Collector) -> list[tuple[tuple, int]]:
    return [(lab, ts) for b in coll.batches
            for lab, ts, v in zip(b.labels, b.timestamps, b.values, strict=True) if is_handoff_nan(v)]


@pytest.mark.parametrize("stalled", [False, True])
def test_a_moved_target_gets_handoff_markers_stamped_with_its_cutoff(exporters, stalled):
    """One marker per series of the last scrape (report series included), in a batch of its own.

    The cut-off keeps the last scrape when it is fresh (the new owner, at the same phase,
    writes one interval later) and is "now" after missed scrapes (a stall: it wrote already).
    """
    a, b = (e.address for e in exporters)

    async def go() -> None:
        coll = Collector()
        share = Share({a, b})
        pool = ScrapePool(cfg(), coll, seed=7, ownership=share)
        pool.sync([tg(a), tg(b)])
        await until(lambda: len(ups(coll).get(a, [])) >= 2)
        loop = next(lp for lp in pool._loops.values() if lp.target.labels and a in lp.target.url)
        if stalled:
            loop.status.last_scrape -= 2 * IV  # as if the loop had missed two scrapes
        last = int(loop.status.last_scrape * 1000)
        share.mine = {b}
        before = time.time()
        pool.rebalance()
        got = handoffs(coll)
        assert {dict(lab)["instance"] for lab, _ in got} == {a}
        names = {dict(lab)["__name__"] for lab, _ in got}
        assert names == {"a", "up", "scrape_duration_seconds", "scrape_samples_scraped",
                         "scrape_samples_post_metric_relabeling", "scrape_series_added"}
        cutoffs = {ts for _, ts in got}
        assert len(cutoffs) == 1
        if stalled:
            assert cutoffs.pop() >= int(before * 1000)
        else:
            assert cutoffs == {last}
        assert all(not is_handoff_nan(v) for v in coll.batches[-2].values)  # a batch of their own
        await pool.stop()

    asyncio.run(go())
