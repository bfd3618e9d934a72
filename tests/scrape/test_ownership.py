"""Shared targets: a pool scrapes only what it owns, hands moved targets over without stale markers,
and asks before every scrape."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from agent import labels as L
from agent.scrape.ownership import target_key
from agent.scrape.pool import ScrapePool
from agent.scrape.target import populate_labels
from tests.scrape.server import Collector, Exporter
from tests.scrape.test_pool import IV, cfg, stale_series, tg, until, ups


class Share:
    """An ownership a test changes by hand: the set of addresses this agent owns."""

    def __init__(self, mine: set[str]) -> None:
        self.mine = mine
        self.asked = 0

    def owns(self, key: bytes) -> bool:
        self.asked += 1
        return any(a.encode() in key.split(b"\xff") for a in self.mine)

    def owner(self, key: bytes) -> str:
        return "self" if self.owns(key) else "agent-b"


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
