"""The scrape pool on a real event loop with real exporters: scheduling, sync, staleness, config."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from agent import labels as L
from agent.scrape.config import ScrapeConfig, format_duration, parse_duration
from agent.scrape.offset import offset, target_hash
from agent.scrape.pool import ScrapePool
from agent.scrape.target import populate_labels, target_url
from agent.storage import is_stale_nan
from tests.scrape.server import Collector, Exporter, free_port

IV = 0.5


@pytest.fixture
def exporters() -> Iterator[list[Exporter]]:
    es = [Exporter().start() for _ in range(2)]
    for i, e in enumerate(es):
        e.set(body=f'a{{n="{i}"}} {i}\nb 1\n')
    yield es
    for e in es:
        e.stop()


def cfg(**kw: object) -> ScrapeConfig:
    base: dict[str, object] = dict(job_name="j", scrape_interval=IV, scrape_timeout=IV * 0.8)
    base.update(kw)
    return ScrapeConfig(**base)  # type: ignore[arg-type]


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


def ups(coll: Collector) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for b in coll.batches:
        for lab, v in zip(b.labels, b.values, strict=True):
            d = dict(lab)
            if d["__name__"] == "up" and not is_stale_nan(v):
                out.setdefault(d["instance"], []).append(v)
    return out


def stale_series(coll: Collector) -> set[tuple]:
    return {
        lab
        for b in coll.batches
        for lab, v in zip(b.labels, b.values, strict=True)
        if is_stale_nan(v)
    }


def tg(addr: str, **kw: str) -> tuple:
    return L.from_dict({"__address__": addr, **kw})


def test_targets_scraped_refused_one_isolated(exporters: list[Exporter]) -> None:
    dead = f"127.0.0.1:{free_port()}"

    async def go() -> None:
        coll = Collector()
        pool = ScrapePool(cfg(), coll, seed=1)
        pool.sync([tg(exporters[0].address), tg(exporters[1].address), tg(dead)])
        await until(
            lambda: all(
                len(ups(coll).get(a, [])) >= 2
                for a in (exporters[0].address, exporters[1].address, dead)
            )
        )
        u = ups(coll)
        errors = [s.last_error for s in pool.targets()]
        assert set(u[exporters[0].address]) == {1.0}, errors
        assert set(u[exporters[1].address]) == {1.0}
        assert set(u[dead]) == {0.0}
        status = {dict(s.labels)["instance"]: s for s in pool.targets()}
        assert status[dead].health == "down" and "Get" in status[dead].last_error
        assert status[exporters[0].address].health == "up"
        assert status[exporters[0].address].series == 2
        assert status[exporters[0].address].scrape_url == f"http://{exporters[0].address}/metrics"
        await pool.stop()

    asyncio.run(go())


def test_removed_target_gets_stale_markers_others_continue(exporters: list[Exporter]) -> None:
    a0, a1 = exporters[0].address, exporters[1].address

    async def go() -> None:
        coll = Collector()
        pool = ScrapePool(cfg(), coll, seed=2)
        pool.sync([tg(a0), tg(a1)])
        await until(lambda: len(ups(coll).get(a1, [])) >= 1 and len(ups(coll).get(a0, [])) >= 1)
        loop0 = next(lp for k, lp in pool._loops.items() if L.get(k, "instance") == a0)
        pool.sync([tg(a0)])
        assert next(iter(pool._loops.values())) is loop0  # the kept target was not restarted
        await until(lambda: any(L.get(s, "instance") == a1 for s in stale_series(coll)), timeout=5)
        stale = {s for s in stale_series(coll) if L.get(s, "instance") == a1}
        names = {L.get(s, "__name__") for s in stale}
        assert names == {
            "a",
            "b",
            "up",
            "scrape_duration_seconds",
            "scrape_samples_scraped",
            "scrape_samples_post_metric_relabeling",
            "scrape_series_added",
        }
        n0 = len(ups(coll)[a0])
        await until(lambda: len(ups(coll)[a0]) > n0)  # target 0 keeps being scraped
        assert not any(L.get(s, "instance") == a0 for s in stale_series(coll))
        await pool.stop()

    asyncio.run(go())


def test_stop_writes_no_stale_markers(exporters: list[Exporter]) -> None:
    async def go() -> None:
        coll = Collector()
        pool = ScrapePool(cfg(), coll, seed=3)
        pool.sync([tg(exporters[0].address)])
        await until(lambda: len(coll.batches) >= 1)
        pool.sync([])  # retiring loop pending its end-of-run staleness...
        await pool.stop()  # ...is cancelled by shutdown
        n = len(coll.batches)
        await asyncio.sleep(IV * 3)
        assert len(coll.batches) == n
        assert stale_series(coll) == set()

    asyncio.run(go())


def test_update_config_restarts_only_on_change_and_keeps_cache(exporters: list[Exporter]) -> None:
    a0 = exporters[0].address

    async def go() -> None:
        coll = Collector()
        pool = ScrapePool(cfg(), coll, seed=4)
        pool.sync([tg(a0)])
        await until(lambda: len(coll.batches) >= 1)
        loop = next(iter(pool._loops.values()))
        pool.update_config(cfg())  # equal: untouched
        assert next(iter(pool._loops.values())) is loop
        pool.update_config(cfg(scrape_timeout=IV * 0.7, sample_limit=100))
        new = next(iter(pool._loops.values()))
        assert new is not loop and new.cache is loop.cache
        n = len(coll.batches)
        await until(lambda: len(coll.batches) >= n + 2)
        assert coll.value("scrape_series_added") == 0.0  # cache carried over
        assert stale_series(coll) == set()
        pool.update_config(cfg(honor_labels=True))
        assert next(iter(pool._loops.values())).cache is not new.cache
        await pool.stop()

    asyncio.run(go())


def test_target_limit_forces_failure(exporters: list[Exporter]) -> None:
    async def go() -> None:
        coll = Collector()
        pool = ScrapePool(cfg(target_limit=1), coll, seed=5)
        pool.sync([tg(e.address) for e in exporters])
        await until(lambda: all(len(v) >= 1 for v in ups(coll).values()) and len(ups(coll)) == 2)
        assert {v for vs in ups(coll).values() for v in vs} == {0.0}
        assert all(s.last_error.startswith("target_limit exceeded") for s in pool.targets())
        assert all(not r for e in exporters for r in e.requests)
        await pool.stop()

    asyncio.run(go())


def test_target_labels_and_invalid_targets() -> None:
    c = cfg(params={"module": ["m1", "m2"]}, scrape_interval=30, scrape_timeout=10)
    final = populate_labels(
        tg("h:1", __meta_k="v", __scheme__="https", __param_module="over", team="x"), c
    )
    assert final is not None
    d = dict(final)
    assert d["job"] == "j" and d["instance"] == "h:1" and d["team"] == "x"
    assert d["__scrape_interval__"] == "30s" and d["__scrape_timeout__"] == "10s"
    assert "__meta_k" not in d
    assert target_url(final, c.params) == "https://h:1/metrics?module=over&module=m2"
    pool = ScrapePool(c, Collector(), seed=0)
    assert (
        pool._targets([L.from_dict({"x": "y"}), tg("a/b"), tg("h:2", __scrape_timeout__="1m")])
        == {}
    )
    reasons = [d.reason for d in pool.dropped_targets()]
    assert reasons == [
        "no address",
        '"a/b" is not a valid hostname',
        'scrape timeout cannot be greater than scrape interval ("1m" > "30s")',
    ]


def test_durations_round_trip() -> None:
    for s, text in [
        (60, "1m"),
        (90, "1m30s"),
        (0.5, "500ms"),
        (3600, "1h"),
        (15, "15s"),
        (0, "0s"),
    ]:
        assert format_duration(s) == text
        assert parse_duration(text) == s
    with pytest.raises(ValueError):
        parse_duration("15x")


def test_offset_is_pinned_to_absolute_time_and_seeded() -> None:
    h = target_hash(tg("h:1"), "http://h:1/metrics")
    iv = 15.0
    for now in (1000.0, 1003.7, 1014.2):
        phase = (now + offset(iv, h, 7, now)) % iv
        assert phase == pytest.approx(((h ^ 7) % int(iv * 1e9)) / 1e9, abs=1e-6)
        assert 0 < offset(iv, h, 7, now) <= iv
    assert offset(iv, h, 7, 1000.0) != offset(iv, h, 8, 1000.0)
    assert target_hash(tg("h:1"), "u") == target_hash(tg("h:1"), "u")
