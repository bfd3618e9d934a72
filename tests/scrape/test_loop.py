"""One target's scrapes against a real HTTP exporter: report series, staleness, limits, HTTP."""

from __future__ import annotations

import asyncio
import base64
import math
import time
from collections.abc import Iterator

import pytest

from agent import labels as L
from agent.httpconfig import BasicAuth, HTTPClientConfig
from agent.relabel import Rule
from agent.scrape.config import ScrapeConfig
from agent.scrape.loop import COLD_CHUNK_BYTES, ScrapeLoop
from agent.scrape.target import Target, populate_labels
from agent.storage import is_stale_nan
from tests.scrape.server import Collector, Exporter, free_port

T0 = 1_700_000_000.0


@pytest.fixture
def exp() -> Iterator[Exporter]:
    e = Exporter().start()
    yield e
    e.stop()


def make_loop(address: str, coll: Collector, **kw: object) -> ScrapeLoop:
    base = dict(job_name="job1", scrape_interval=5.0, scrape_timeout=2.0)
    base.update(kw)
    cfg = ScrapeConfig(**base)  # type: ignore[arg-type]
    disc = L.from_dict({"__address__": address, "__meta_x": "m"})
    final = populate_labels(disc, cfg)
    assert final is not None
    return ScrapeLoop(Target(disc, final, cfg.params), cfg, coll, seed=0)


def scrape(loop: ScrapeLoop, *times: float, between=None) -> None:
    async def go() -> None:
        for i, t in enumerate(times):
            if between is not None and i:
                between(i)
            await loop.scrape_and_report(t)
        await loop.scraper.close()

    asyncio.run(go())


def lab(**kw: str) -> tuple:
    return L.from_dict(kw)


def test_samples_target_labels_report_series_and_metadata(exp: Exporter) -> None:
    exp.set(body='# HELP a_total Things.\n# TYPE a_total counter\na_total{x="1"} 3\nb 1.5 123\n')
    coll = Collector()
    loop = make_loop(exp.address, coll)
    scrape(loop, T0)
    inst = exp.address
    s = coll.samples()
    assert s[lab(__name__="a_total", x="1", job="job1", instance=inst)] == 3.0
    assert s[lab(__name__="b", job="job1", instance=inst)] == 1.5
    b = coll.batches[0]
    ts = dict(zip(b.labels, b.timestamps, strict=True))
    assert ts[lab(__name__="b", job="job1", instance=inst)] == 123  # honored timestamp
    assert ts[lab(__name__="a_total", x="1", job="job1", instance=inst)] == int(T0 * 1000)
    assert coll.value("up") == 1.0
    assert coll.value("scrape_samples_scraped") == 2.0
    assert coll.value("scrape_samples_post_metric_relabeling") == 2.0
    assert coll.value("scrape_series_added") == 2.0
    assert coll.value("scrape_duration_seconds") >= 0.0
    assert lab(__name__="up", job="job1", instance=inst) in s
    assert b.metadata["a_total"].type == "counter" and b.metadata["a_total"].help == "Things."
    assert loop.status.health == "up" and loop.status.last_error == ""
    assert loop.status.last_scrape == T0


def test_vanished_series_gets_stale_marker_and_cache_hits(exp: Exporter) -> None:
    exp.set(body='a{x="1"} 1\na{x="2"} 2\n')
    coll = Collector()
    loop = make_loop(exp.address, coll)

    def change(i: int) -> None:
        exp.set(body='a{x="1"} 10\n' if i == 1 else 'a{x="1"} 11\na{x="3"} 3\n')

    scrape(loop, T0, T0 + 5, T0 + 10, between=change)
    gone = lab(__name__="a", x="2", job="job1", instance=exp.address)
    assert coll.stale(1) == {gone}
    assert coll.value("scrape_series_added", 1) == 0.0  # x=1 was a cache hit
    assert coll.value("scrape_series_added", 2) == 1.0
    assert coll.stale(2) == set()
    # x=2 was evicted after its stale marker; x=1 and x=3 remain.
    assert set(loop.cache.entries) == {b'a{x="1"}', b'a{x="3"}'}


def test_failed_scrape_marks_previous_series_stale_and_reports_down(exp: Exporter) -> None:
    exp.set(body="a 1\nb 2\n")
    coll = Collector()
    loop = make_loop(exp.address, coll)
    scrape(
        loop,
        T0,
        T0 + 5,
        T0 + 10,
        between=lambda i: exp.set(body="a 1\nb{ 2\n") if i == 1 else exp.set(body="a 1\n"),
    )
    inst = exp.address
    assert coll.value("up", 1) == 0.0
    assert coll.stale(1) == {
        lab(__name__="a", job="job1", instance=inst),
        lab(__name__="b", job="job1", instance=inst),
    }
    assert "line 2" in loop.status.last_error or coll.value("up", 2) == 1.0
    assert coll.value("up", 2) == 1.0
    assert coll.stale(2) == set()  # nothing was tracked after the failure
    assert loop.status.health == "up"


def test_parse_error_names_line(exp: Exporter) -> None:
    exp.set(body='a 1\n\nb{x="1"} nope\n')
    coll = Collector()
    loop = make_loop(exp.address, coll)
    scrape(loop, T0)
    assert coll.value("up") == 0.0
    assert loop.status.health == "down"
    assert loop.status.last_error.startswith("line 3:")
    assert "nope" in loop.status.last_error


@pytest.mark.parametrize("honor", [False, True])
def test_honor_labels(exp: Exporter, honor: bool) -> None:
    exp.set(body='a{job="exposed",exported_job="x",instance="i"} 1\n')
    coll = Collector()
    loop = make_loop(exp.address, coll, honor_labels=honor)
    scrape(loop, T0)
    got = [k for k in coll.by_name("a")]
    if honor:
        assert got == [lab(__name__="a", job="exposed", exported_job="x", instance="i")]
    else:
        assert got == [
            lab(
                __name__="a",
                job="job1",
                instance=exp.address,
                exported_exported_job="exposed",
                exported_job="x",
                exported_instance="i",
            )
        ]


def test_metric_relabel_drop_and_rewrite_cached(exp: Exporter) -> None:
    exp.set(body="keep_me 1\ndrop_me 2\n")
    coll = Collector()
    rules = [
        Rule(source_labels=["__name__"], regex="drop_.*", action="drop"),
        Rule(source_labels=["__name__"], regex="(.*)", target_label="orig", replacement="$1"),
    ]
    loop = make_loop(exp.address, coll, metric_relabel_rules=rules)
    scrape(loop, T0, T0 + 5)
    assert coll.by_name("keep_me") == {
        lab(__name__="keep_me", orig="keep_me", job="job1", instance=exp.address): 1.0
    }
    assert not coll.by_name("drop_me")
    assert coll.value("scrape_samples_scraped") == 2.0
    assert coll.value("scrape_samples_post_metric_relabeling") == 1.0
    assert loop.cache.entries[b"drop_me"] == ()


def test_sample_limit_fails_scrape(exp: Exporter) -> None:
    exp.set(body="a 1\nb 2\nc 3\n")
    coll = Collector()
    loop = make_loop(exp.address, coll, sample_limit=2, extra_metrics=True)
    scrape(loop, T0)
    assert coll.value("up") == 0.0
    assert loop.status.last_error == "sample limit exceeded"
    assert not coll.by_name("a")
    assert coll.value("scrape_sample_limit") == 2.0
    assert coll.value("scrape_timeout_seconds") == 2.0


@pytest.mark.parametrize(
    "kw,reason",
    [
        ({"label_limit": 3}, "label_limit exceeded"),
        ({"label_name_length_limit": 5}, "label_name_length_limit exceeded"),
        ({"label_value_length_limit": 5}, "label_value_length_limit exceeded"),
    ],
)
def test_label_limits(exp: Exporter, kw: dict, reason: str) -> None:
    exp.set(body='a{longname="longvalue"} 1\n')
    coll = Collector()
    loop = make_loop(exp.address, coll, **kw)
    scrape(loop, T0)
    assert coll.value("up") == 0.0
    assert reason in loop.status.last_error


def test_body_size_limit(exp: Exporter) -> None:
    exp.set(body="a 1\n" * 100)
    coll = Collector()
    loop = make_loop(exp.address, coll, body_size_limit=64, extra_metrics=True)
    scrape(loop, T0)
    assert coll.value("up") == 0.0
    assert loop.status.last_error == "body size limit exceeded"
    assert coll.value("scrape_body_size_bytes") == -1.0


def test_refused_target(exp: Exporter) -> None:
    coll = Collector()
    loop = make_loop(f"127.0.0.1:{free_port()}", coll)
    scrape(loop, T0)
    assert coll.value("up") == 0.0
    assert loop.status.health == "down" and loop.status.last_error.startswith(
        'Get "http://127.0.0.1:'
    )


def test_non_200_is_a_failure(exp: Exporter) -> None:
    exp.set(body="a 1\n", status=503)
    coll = Collector()
    loop = make_loop(exp.address, coll)
    scrape(loop, T0)
    assert coll.value("up") == 0.0
    assert loop.status.last_error == "server returned HTTP status 503 Service Unavailable"


def test_trickling_target_times_out(exp: Exporter) -> None:
    exp.set(body="a 1\n" * 50, trickle=0.05)
    coll = Collector()
    loop = make_loop(exp.address, coll, scrape_interval=1.0, scrape_timeout=0.3)
    scrape(loop, T0)
    assert coll.value("up") == 0.0
    assert "context deadline exceeded" in loop.status.last_error


def test_basic_auth_and_headers_reach_target(exp: Exporter) -> None:
    exp.set(body="a 1\n", gzip=True)
    coll = Collector()
    http = HTTPClientConfig(basic_auth=BasicAuth(username="u", password="s3cret"))
    loop = make_loop(exp.address, coll, http=http)
    scrape(loop, T0)
    assert coll.value("up") == 1.0
    _, h = exp.requests[-1]
    assert h["authorization"] == "Basic " + base64.b64encode(b"u:s3cret").decode()
    assert h["accept-encoding"] == "gzip"
    assert h["x-prometheus-scrape-timeout-seconds"] == "2"
    assert h["accept"].startswith("application/openmetrics-text;version=1.0.0;q=0.6,")
    assert "s3cret" not in repr(http)


def test_bearer_token_file_reread(exp: Exporter, tmp_path) -> None:
    exp.set(body="a 1\n")
    f = tmp_path / "token"
    f.write_text("tok1\n")
    coll = Collector()
    loop = make_loop(exp.address, coll, http=HTTPClientConfig(bearer_token_file=str(f)))
    scrape(loop, T0, T0 + 5, between=lambda i: f.write_text("tok2"))
    assert [h["authorization"] for _, h in exp.requests] == ["Bearer tok1", "Bearer tok2"]


def test_gzip_body_is_decoded(exp: Exporter) -> None:
    body = "".join(f'm{{i="{i}"}} {i}\n' for i in range(500))
    exp.set(body=body, gzip=True)
    coll = Collector()
    loop = make_loop(exp.address, coll)
    scrape(loop, T0)
    assert coll.value("up") == 1.0
    assert len(coll.by_name("m")) == 500


def test_duplicate_series_keeps_first(exp: Exporter) -> None:
    # The same line twice, and one label set spelled two ways (order, an empty label).
    exp.set(body='a 1\na 2\nb 3\nc{x="1",y="2"} 4\nc{y="2",x="1"} 5\nd{x="1",y=""} 6\nd{x="1"} 7\n')
    coll = Collector()
    loop = make_loop(exp.address, coll)
    scrape(loop, T0, T0 + 5)
    for i in (0, 1):  # the second scrape is all cache hits
        assert coll.value("up", i) == 1.0
        assert list(coll.by_name("a", i).values()) == [1.0]
        assert list(coll.by_name("c", i).values()) == [4.0]
        assert list(coll.by_name("d", i).values()) == [6.0]
        assert coll.value("scrape_samples_scraped", i) == 7.0
        # Prometheus counts repeats here: "the exact number of time series exposed".
        assert coll.value("scrape_samples_post_metric_relabeling", i) == 7.0


def test_honor_timestamps_false_and_explicit_ts_staleness(exp: Exporter) -> None:
    exp.set(body="a 1 1000\nb 2\n")
    coll = Collector()
    loop = make_loop(exp.address, coll, honor_timestamps=True)
    scrape(loop, T0, T0 + 5, between=lambda i: exp.set(body=""))
    # b vanished -> stale; a had an explicit timestamp -> not tracked (track_timestamps_staleness off)
    assert coll.stale(1) == {lab(__name__="b", job="job1", instance=exp.address)}

    coll2 = Collector()
    exp.set(body="a 1 1000\n")
    loop2 = make_loop(exp.address, coll2, honor_timestamps=False)
    scrape(loop2, T0, T0 + 5, between=lambda i: exp.set(body=""))
    b = coll2.batches[0]
    assert b.timestamps[b.labels.index(lab(__name__="a", job="job1", instance=exp.address))] == int(
        T0 * 1000
    )
    assert coll2.stale(1) == {lab(__name__="a", job="job1", instance=exp.address)}


def test_track_timestamps_staleness(exp: Exporter) -> None:
    exp.set(body="a 1 1000\n")
    coll = Collector()
    loop = make_loop(exp.address, coll, track_timestamps_staleness=True)
    scrape(loop, T0, T0 + 5, between=lambda i: exp.set(body=""))
    assert coll.stale(1) == {lab(__name__="a", job="job1", instance=exp.address)}


def test_nan_inf_values_and_stale_distinct(exp: Exporter) -> None:
    exp.set(body="a NaN\nb +Inf\nc -Inf\n")
    coll = Collector()
    loop = make_loop(exp.address, coll)
    scrape(loop, T0)
    a = coll.value("a")
    assert math.isnan(a) and not is_stale_nan(a)
    assert coll.value("b") == math.inf and coll.value("c") == -math.inf


def test_openmetrics_negotiated_and_parsed(exp: Exporter) -> None:
    exp.set(
        body='# TYPE a counter\n# UNIT a seconds\na_total 1.5 1700000000.5 # {t="x"} 1\n# EOF\n',
        content_type="application/openmetrics-text; version=1.0.0; charset=utf-8",
    )
    coll = Collector()
    loop = make_loop(exp.address, coll)
    scrape(loop, T0)
    assert coll.value("up") == 1.0, loop.status.last_error
    b = coll.batches[0]
    i = b.labels.index(lab(__name__="a_total", job="job1", instance=exp.address))
    assert b.values[i] == 1.5 and b.timestamps[i] == 1_700_000_000_500
    assert b.metadata["a"].unit == "seconds" and b.metadata["a"].type == "counter"


def test_openmetrics_without_eof_fails(exp: Exporter) -> None:
    exp.set(body="a 1\n", content_type="application/openmetrics-text; version=1.0.0")
    coll = Collector()
    loop = make_loop(exp.address, coll)
    scrape(loop, T0)
    assert coll.value("up") == 0.0
    assert "# EOF" in loop.status.last_error


def test_blank_content_type_uses_fallback_or_fails(exp: Exporter) -> None:
    exp.set(body="a 1\n", content_type="")
    coll = Collector()
    scrape(make_loop(exp.address, coll), T0)
    assert coll.value("up") == 1.0
    coll2 = Collector()
    loop = make_loop(exp.address, coll2, scrape_fallback_protocol="")
    scrape(loop, T0)
    assert coll2.value("up") == 0.0
    assert "blank Content-Type" in loop.status.last_error


def test_forced_error_reports_down_without_request(exp: Exporter) -> None:
    exp.set(body="a 1\n")
    coll = Collector()
    loop = make_loop(exp.address, coll)
    loop.forced_error = "target_limit exceeded (number of targets: 2, limit: 1)"
    scrape(loop, T0)
    assert exp.requests == []
    assert coll.value("up") == 0.0 and loop.status.last_error.startswith("target_limit")


def _up_times(coll: Collector) -> list[int]:
    """The scrape timestamp of each scrape (its ``up`` sample), in order."""
    out = []
    for b in coll.batches:
        for labels, ts in zip(b.labels, b.timestamps, strict=True):
            if dict(labels).get(L.METRIC_NAME) == "up":
                out.append(ts)
    return out


def test_ticks_the_loop_reaches_too_late_are_skipped_and_counted_not_bunched(exp: Exporter) -> None:
    """A held event loop makes every tick late: those are skipped, not scraped in a burst after."""
    exp.set(body="a 1\n")
    coll = Collector()
    interval = 0.2
    loop = make_loop(exp.address, coll, scrape_interval=interval, scrape_timeout=0.1)

    async def go() -> None:
        loop.start()
        while len(coll.batches) < 2:
            await asyncio.sleep(0.01)
        time.sleep(3.5 * interval)  # holds the loop: three or four ticks pass unserved
        held = len(coll.batches)
        while len(coll.batches) < held + 3:
            await asyncio.sleep(0.01)
        loop.cancel()
        await loop.wait()

    asyncio.run(go())
    # Every tick that passed during the hold was reached more than a quarter interval late
    # (but the last one, perhaps): at least three are counted, none was scraped late.
    assert loop.skipped["late"] >= 3
    assert loop.skipped["overrun"] == 0
    times = _up_times(coll)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0.7 * interval * 1000, gaps  # no two scrapes bunched together
    assert max(gaps) >= 3 * interval * 1000  # the hold shows as a gap, not as extra scrapes


def test_a_scrape_that_runs_past_ticks_counts_them_as_overrun(exp: Exporter) -> None:
    """Ticks passed while this target's own scrape ran (the receiver held it) are overruns."""
    exp.set(body="a 1\n")
    interval = 0.2

    class Slow(Collector):
        def append(self, batch):  # type: ignore[no-untyped-def]
            super().append(batch)
            if len(self.batches) == 2:
                time.sleep(2.5 * interval)  # the second scrape's append holds it past two ticks

    coll = Slow()
    loop = make_loop(exp.address, coll, scrape_interval=interval, scrape_timeout=0.1)

    async def go() -> None:
        loop.start()
        while len(coll.batches) < 4:
            await asyncio.sleep(0.01)
        loop.cancel()
        await loop.wait()

    asyncio.run(go())
    # Two ticks passed: the whole one is an overrun; the one kept was then too late to scrape.
    assert loop.skipped["overrun"] >= 1
    assert loop.skipped["overrun"] + loop.skipped["late"] >= 2
    times = _up_times(coll)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0.7 * interval * 1000, gaps


def test_a_first_scrape_parsed_in_small_chunks_gives_what_a_cached_one_gives(exp: Exporter) -> None:
    """A cold cache parses in COLD_CHUNK_BYTES pieces; no line is lost or split at their seams."""
    lines = [f'# TYPE m{i % 7} gauge\n' if i < 7 else "" for i in range(7)]
    body = "".join(lines) + "".join(
        f'm{i % 7}{{pod="p-{i:05d}",route="/api/v1/items/{i}"}} {i}.5\n' for i in range(3000)
    )
    assert len(body) > 3 * COLD_CHUNK_BYTES
    exp.set(body=body)
    coll = Collector()
    loop = make_loop(exp.address, coll)
    scrape(loop, T0, T0 + 5)
    cold, warm = coll.by_name("m3", 0), coll.by_name("m3", 1)
    assert cold == warm and len(cold) == len(range(3, 3000, 7))
    assert len(coll.samples(0)) == len(coll.samples(1)) == 3000 + 5
    assert coll.value("scrape_series_added", 0) == 3000
    cold = coll.samples(0)
    assert cold[lab(__name__="m3", pod="p-02999", route="/api/v1/items/2999", job="job1",
                    instance=exp.address)] == 2999.5
