"""Protobuf scraping end to end: a real HTTP exporter serving client_model payloads, scraped by the loop.

The payloads are built with the protobuf library (client_model's descriptor
built in code), so the decoder is checked against what a real client writes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from agent.relabel import Rule
from agent.scrape.config import ScrapeConfig
from agent.storage import Histogram, is_stale_nan
from tests.protobuf.metrics_pb import COUNTER, GAUGE, HISTOGRAM, MetricFamily, encode_delimited
from tests.scrape.server import PROTO_CONTENT_TYPE, Collector, Exporter
from tests.scrape.test_loop import T0, lab, make_loop, scrape

TEXT = "# TYPE req_total counter\nreq_total{code=\"200\"} 1\n"


@pytest.fixture
def exp() -> Iterator[Exporter]:
    e = Exporter().start()
    yield e
    e.stop()


def payload(*, counter: float = 7.0, hist: bool = True, classic: bool = True, ts: int = 0,
            spans: tuple = ((0, 2), (2, 2)), deltas: tuple = (1, 1, -1, 2), schema: int = 2) -> bytes:
    c = MetricFamily(name="req_total", type=COUNTER, help="Requests.")
    m = c.metric.add()
    m.label.add(name="code", value="200")
    m.counter.value = counter
    m.counter.created_timestamp.seconds = 1_699_999_000
    if ts:
        m.timestamp_ms = ts
    fams = [c]
    if hist:
        h = MetricFamily(name="lat_seconds", type=HISTOGRAM, help="Latency.")
        hm = h.metric.add()
        hm.label.add(name="path", value="/a")
        hh = hm.histogram
        hh.schema = schema
        hh.zero_threshold = 1e-4
        hh.zero_count = 1
        acc = total = 0
        for d in deltas:
            acc += d
            total += acc
        for off, n in spans:
            hh.positive_span.add(offset=off, length=n)
        hh.positive_delta.extend(deltas)
        hh.sample_count = total + 1
        hh.sample_sum = 3.5
        hh.created_timestamp.seconds = 1_699_999_000
        if classic:
            hh.bucket.add(upper_bound=0.5, cumulative_count=2)
            hh.bucket.add(upper_bound=1.0, cumulative_count=total + 1)
        if ts:
            hm.timestamp_ms = ts
        fams.append(h)
    return encode_delimited(fams)


def hists(coll: Collector, i: int = -1) -> dict[tuple, Histogram]:
    return {labels: h for labels, _, h in coll.batches[i].histograms}


def serve_proto(exp: Exporter, body: bytes) -> None:
    exp.set(body=body, content_type=PROTO_CONTENT_TYPE)


# ---------------------------------------------------------------- negotiation


def test_negotiation_picks_protobuf_only_when_enabled(exp: Exporter) -> None:
    exp.set(body=TEXT, proto=payload(counter=7.0, hist=False))
    inst = exp.address
    series = lab(__name__="req_total", code="200", job="job1", instance=inst)

    coll = Collector()
    scrape(make_loop(inst, coll), T0)
    assert "protobuf" not in exp.requests[-1][1]["accept"]
    assert coll.samples()[series] == 1.0  # the text body

    for kw in ({"scrape_native_histograms": True}, {"enable_protobuf_negotiation": True}):
        coll = Collector()
        scrape(make_loop(inst, coll, **kw), T0)
        assert exp.requests[-1][1]["accept"] == (
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
            "encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;q=0.5,"
            "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        )
        assert coll.samples()[series] == 7.0  # the protobuf body
        assert coll.batches[-1].metadata["req_total"].help == "Requests."


def test_protocol_list_order_and_validation() -> None:
    cfg = ScrapeConfig(scrape_protocols=["PrometheusText0.0.4", "PrometheusProto"])
    assert cfg.accept_header().startswith("text/plain;version=0.0.4;q=0.6,application/vnd.google")
    with pytest.raises(ValueError, match="PrometheusProto is not in scrape_protocols"):
        ScrapeConfig(scrape_native_histograms=True, scrape_protocols=["PrometheusText0.0.4"]).validate()
    with pytest.raises(ValueError, match="only one can be set"):
        ScrapeConfig(enable_protobuf_negotiation=True, scrape_protocols=["PrometheusProto"]).validate()
    ScrapeConfig(scrape_native_histograms=True, scrape_protocols=["PrometheusProto"]).validate()


def test_fallback_protocol_can_be_protobuf(exp: Exporter) -> None:
    exp.set(body=payload(hist=False), content_type="")
    coll = Collector()
    loop = make_loop(exp.address, coll, scrape_fallback_protocol="PrometheusProto")
    scrape(loop, T0)
    assert coll.value("up") == 1.0 and coll.value("req_total") == 7.0


# ---------------------------------------------------------------- histograms, counters


def test_native_histogram_and_counter_with_created_timestamp(exp: Exporter) -> None:
    serve_proto(exp, payload())
    coll = Collector()
    scrape(make_loop(exp.address, coll, scrape_native_histograms=True), T0)
    inst = exp.address
    assert coll.value("up") == 1.0
    assert coll.samples()[lab(__name__="req_total", code="200", job="job1", instance=inst)] == 7.0
    h = hists(coll)[lab(__name__="lat_seconds", path="/a", job="job1", instance=inst)]
    # deltas 1,1,-1,2 -> counts 1,2,1,3 over indices 0,1 and 4,5
    assert h == Histogram(count=8, sum=3.5, schema=2, zero_threshold=1e-4, zero_count=1,
                          positive_spans=((0, 2), (2, 2)), positive_counts=(1, 2, 1, 3))
    assert coll.batches[-1].histograms[0][1] == int(T0 * 1000)
    assert coll.by_name("lat_seconds_bucket") == {}  # classic buckets not kept by default
    assert coll.value("scrape_samples_scraped") == 2.0
    assert coll.value("scrape_samples_post_metric_relabeling") == 2.0
    assert coll.value("scrape_series_added") == 2.0
    md = coll.batches[-1].metadata
    assert (md["lat_seconds"].type, md["req_total"].type) == ("histogram", "counter")


def test_classic_histograms_kept_when_asked(exp: Exporter) -> None:
    serve_proto(exp, payload())
    coll = Collector()
    scrape(make_loop(exp.address, coll, scrape_native_histograms=True,
                     scrape_classic_histograms=True), T0)
    inst = exp.address
    buckets = {dict(k)["le"]: v for k, v in coll.by_name("lat_seconds_bucket").items()}
    assert buckets == {"0.5": 2.0, "1.0": 8.0, "+Inf": 8.0}
    assert coll.value("lat_seconds_count") == 8.0 and coll.value("lat_seconds_sum") == 3.5
    assert len(hists(coll)) == 1
    assert coll.value("scrape_samples_scraped") == 7.0  # counter, histogram, count, sum, 3 buckets
    assert lab(__name__="lat_seconds", path="/a", job="job1", instance=inst) in hists(coll)


def test_native_histograms_off_reads_histograms_as_classic(exp: Exporter) -> None:
    serve_proto(exp, payload())
    coll = Collector()
    scrape(make_loop(exp.address, coll, scrape_protocols=["PrometheusProto"]), T0)
    assert coll.batches[-1].histograms == []
    buckets = {dict(k)["le"]: v for k, v in coll.by_name("lat_seconds_bucket").items()}
    assert buckets == {"0.5": 2.0, "1.0": 8.0, "+Inf": 8.0}


def test_repeated_scrapes_hit_cache_and_vanished_histogram_goes_stale(exp: Exporter) -> None:
    serve_proto(exp, payload())
    coll = Collector()
    loop = make_loop(exp.address, coll, scrape_native_histograms=True,
                     scrape_classic_histograms=True)

    def change(i: int) -> None:
        serve_proto(exp, payload(counter=9.0, deltas=(2, 1, -1, 2)) if i == 1 else
                    payload(counter=10.0, hist=False))

    scrape(loop, T0, T0 + 5, T0 + 10, between=change)
    inst = exp.address
    hl = lab(__name__="lat_seconds", path="/a", job="job1", instance=inst)
    assert coll.value("scrape_series_added", 1) == 0.0  # every series a cache hit
    assert hists(coll, 1)[hl].positive_counts == (2, 3, 2, 4)
    assert coll.value("req_total", 1) == 9.0
    stale = coll.stale(2)
    assert hl in stale  # the native histogram series gets a float stale marker
    assert lab(__name__="lat_seconds_bucket", le="+Inf", path="/a", job="job1", instance=inst) in stale
    assert lab(__name__="lat_seconds_count", path="/a", job="job1", instance=inst) in stale
    assert len(stale) == 6
    assert coll.batches[2].histograms == []
    assert coll.value("req_total", 2) == 10.0
    assert len(loop.cache.records) == 0  # the histogram's record left with it


def test_failed_scrape_marks_histograms_stale(exp: Exporter) -> None:
    serve_proto(exp, payload())
    coll = Collector()
    loop = make_loop(exp.address, coll, scrape_native_histograms=True)
    scrape(loop, T0, T0 + 5, between=lambda i: exp.set(body=b"", status=500))
    hl = lab(__name__="lat_seconds", path="/a", job="job1", instance=exp.address)
    assert coll.value("up", 1) == 0.0
    assert hl in coll.stale(1)
    (v,) = [v for k, v in coll.samples(1).items() if k == hl]
    assert is_stale_nan(v)


def test_corrupt_protobuf_body_gives_up_0_with_reason(exp: Exporter) -> None:
    body = payload()
    serve_proto(exp, body[: len(body) // 2])
    coll = Collector()
    loop = make_loop(exp.address, coll, scrape_native_histograms=True)
    scrape(loop, T0)
    assert coll.value("up") == 0.0
    assert loop.status.health == "down"
    assert loop.status.last_error.startswith("protobuf: metric family 2 at byte")
    assert "remain" in loop.status.last_error
    serve_proto(exp, b"\x0f\x0a\x03abc\x18\x01\x22\x07\x12\x05\x09\x00\x00")
    scrape(loop, T0 + 5)
    assert coll.value("up") == 0.0 and "protobuf: metric family 1" in loop.status.last_error


def test_honor_timestamps_with_timestamp_ms(exp: Exporter) -> None:
    serve_proto(exp, payload(ts=1_600_000_000_123))
    for honor, want in ((True, 1_600_000_000_123), (False, int(T0 * 1000))):
        coll = Collector()
        scrape(make_loop(exp.address, coll, scrape_native_histograms=True, honor_timestamps=honor), T0)
        b = coll.batches[-1]
        ts = dict(zip(b.labels, b.timestamps, strict=True))
        assert ts[lab(__name__="req_total", code="200", job="job1", instance=exp.address)] == want
        assert b.histograms[0][1] == want


# ---------------------------------------------------------------- limits and relabeling


def test_sample_limit_counts_histograms(exp: Exporter) -> None:
    serve_proto(exp, payload())
    for limit, up in ((1, 0.0), (2, 1.0)):
        coll = Collector()
        loop = make_loop(exp.address, coll, scrape_native_histograms=True, sample_limit=limit)
        scrape(loop, T0)
        assert coll.value("up") == up
        assert loop.status.last_error == ("sample limit exceeded" if not up else "")


def test_label_limit_applies_to_histogram_labels(exp: Exporter) -> None:
    c = MetricFamily(name="h", type=HISTOGRAM)
    m = c.metric.add()
    for k in "abcd":
        m.label.add(name=k, value="v")
    m.histogram.positive_span.add(offset=0, length=0)
    serve_proto(exp, encode_delimited([c]))
    coll = Collector()
    loop = make_loop(exp.address, coll, scrape_native_histograms=True, label_limit=6)
    scrape(loop, T0)
    assert coll.value("up") == 0.0
    assert "label_limit exceeded (metric: h, number of labels: 7, limit: 6)" in loop.status.last_error


def test_bucket_limit_reduces_resolution_or_fails(exp: Exporter) -> None:
    serve_proto(exp, payload())  # schema 2, buckets at 0,1,4,5
    coll = Collector()
    scrape(make_loop(exp.address, coll, scrape_native_histograms=True,
                     native_histogram_bucket_limit=3), T0)
    (h,) = hists(coll).values()
    # indices 0,1,4,5 -> schema 1: ((i-1)>>1)+1 = 0,1,2,3 (still 4) -> schema 0: 0,1,1,2
    assert (h.schema, h.positive_spans, h.positive_counts) == (0, ((0, 3),), (1, 3, 3))
    assert h.count == 8 and h.zero_count == 1

    coll = Collector()
    big = payload(schema=-4, spans=((0, 4),), deltas=(1, 0, 0, 0))
    serve_proto(exp, big)
    loop = make_loop(exp.address, coll, scrape_native_histograms=True, native_histogram_bucket_limit=2)
    scrape(loop, T0)
    assert coll.value("up") == 0.0
    assert loop.status.last_error == "histogram bucket limit exceeded"


def test_min_bucket_factor_caps_schema(exp: Exporter) -> None:
    serve_proto(exp, payload(schema=4, spans=((0, 4),), deltas=(1, 0, 0, 0)))
    coll = Collector()
    scrape(make_loop(exp.address, coll, scrape_native_histograms=True,
                     native_histogram_min_bucket_factor=1.1), T0)
    (h,) = hists(coll).values()
    # factor 1.1 allows schema 2 at most: indices 0..3 at schema 4 -> 0,1,1,1
    assert (h.schema, h.positive_spans, h.positive_counts) == (2, ((0, 2),), (1, 3))


def test_metric_relabeling_drops_and_rewrites_histograms(exp: Exporter) -> None:
    serve_proto(exp, payload())
    rules = [
        Rule(source_labels=["__name__"], regex="req_total", action="drop"),
        Rule(source_labels=["path"], regex="/(.*)", target_label="p", replacement="$1"),
    ]
    coll = Collector()
    loop = make_loop(exp.address, coll, scrape_native_histograms=True, metric_relabel_rules=rules)
    scrape(loop, T0, T0 + 5)
    inst = exp.address
    assert set(hists(coll)) == {lab(__name__="lat_seconds", path="/a", p="a", job="job1", instance=inst)}
    assert coll.by_name("req_total") == {}
    assert coll.value("scrape_samples_scraped") == 2.0
    assert coll.value("scrape_samples_post_metric_relabeling") == 1.0
    assert coll.stale(1) == set()


def test_float_values_nan_and_inf_survive(exp: Exporter) -> None:
    g = MetricFamily(name="g", type=GAUGE)
    for i, v in enumerate((math.nan, math.inf, -math.inf)):
        m = g.metric.add()
        m.label.add(name="i", value=str(i))
        m.gauge.value = v
    serve_proto(exp, encode_delimited([g]))
    coll = Collector()
    scrape(make_loop(exp.address, coll, scrape_native_histograms=True), T0)
    vals = [v for k, v in sorted(coll.by_name("g").items())]
    assert math.isnan(vals[0]) and not is_stale_nan(vals[0]) and vals[1:] == [math.inf, -math.inf]


def test_gzip_protobuf_body_and_content_type_decides_parser(exp: Exporter) -> None:
    """A gzipped protobuf response is parsed as protobuf even when text was asked for first."""
    exp.set(body=payload(hist=False), content_type=PROTO_CONTENT_TYPE, gzip=True)
    coll = Collector()
    loop = make_loop(exp.address, coll)  # default protocols: no protobuf in Accept
    scrape(loop, T0)
    assert exp.requests[-1][1]["accept-encoding"] == "gzip"
    assert coll.value("up") == 1.0 and coll.value("req_total") == 7.0
