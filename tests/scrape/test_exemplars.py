"""Exemplars scraped from a real HTTP exporter into ``batch.exemplars``, as Prometheus' scrapeLoop appends them.

OpenMetrics and protobuf carry exemplars; the 0.0.4 text format does not. An
exemplar goes with its series' final labels (target labels attached, metric
relabeling applied), keeps its own timestamp or takes its sample's.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.relabel import Rule
from tests.protobuf.metrics_pb import COUNTER, HISTOGRAM, MetricFamily, encode_delimited
from tests.scrape.server import PROTO_CONTENT_TYPE, Collector, Exporter
from tests.scrape.test_loop import T0, make_loop, scrape

OM = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TS = int(T0 * 1000)

OM_BODY = """# TYPE req counter
req_total{code="200"} 5 # {trace_id="abc"} 1.5 1699999999.25
req_total{code="500"} 1 # {trace_id="def"} 2
# TYPE lat histogram
lat_bucket{le="0.1"} 1 # {trace_id="b1"} 0.05
lat_bucket{le="+Inf"} 3
lat_count 3
lat_sum 0.9
# TYPE noisy counter
noisy_total 9 # {trace_id="x"} 9
# EOF
"""


@pytest.fixture
def exp() -> Iterator[Exporter]:
    e = Exporter().start()
    yield e
    e.stop()


def exemplars(coll: Collector, i: int = -1) -> list[tuple[dict, int, float, dict]]:
    return [(dict(s), ts, v, dict(e)) for s, ts, v, e in coll.batches[i].exemplars]


def test_openmetrics_exemplars_with_target_labels_and_relabeling(exp: Exporter) -> None:
    exp.set(body=OM_BODY, content_type=OM)
    coll = Collector()
    rules = [
        Rule(source_labels=["__name__"], regex="noisy_total", action="drop"),
        Rule(source_labels=["__name__"], regex="req_total", target_label="__name__", replacement="requests_total"),
    ]
    loop = make_loop(exp.address, coll, metric_relabel_rules=rules)
    scrape(loop, T0, T0 + 5)  # the second scrape runs on cache hits
    inst = exp.address
    for i in (0, 1):
        assert coll.value("up", i) == 1.0, loop.status.last_error
        ts = TS + 5000 * i
        assert exemplars(coll, i) == [
            ({"__name__": "requests_total", "code": "200", "job": "job1", "instance": inst},
             1_699_999_999_250, 1.5, {"trace_id": "abc"}),
            ({"__name__": "requests_total", "code": "500", "job": "job1", "instance": inst},
             ts, 2.0, {"trace_id": "def"}),
            ({"__name__": "lat_bucket", "le": "0.1", "job": "job1", "instance": inst},
             ts, 0.05, {"trace_id": "b1"}),
        ]


@pytest.mark.parametrize("honor", [True, False])
def test_exemplar_without_timestamp_takes_its_samples(exp: Exporter, honor: bool) -> None:
    exp.set(body='# TYPE a counter\na_total 1 1700000100.5 # {t="x"} 3\n# EOF\n', content_type=OM)
    coll = Collector()
    scrape(make_loop(exp.address, coll, honor_timestamps=honor), T0)
    ((_, ts, v, e),) = exemplars(coll)
    assert (ts, v, e) == ((1_700_000_100_500 if honor else TS), 3.0, {"t": "x"})


def test_text_format_has_no_exemplars_and_failed_scrape_none(exp: Exporter) -> None:
    exp.set(body='a_total{x="1"} 1\n')
    coll = Collector()
    loop = make_loop(exp.address, coll)
    scrape(loop, T0)
    assert coll.value("up") == 1.0 and coll.batches[-1].exemplars == []
    # An invalid exemplar fails the scrape (as Prometheus' parser does): nothing is forwarded.
    exp.set(body='# TYPE a counter\na_total 1 # {t="x"}\n# EOF\n', content_type=OM)
    scrape(loop, T0 + 5)
    assert coll.value("up") == 0.0 and coll.batches[-1].exemplars == []
    assert "exemplar" in loop.status.last_error


def _proto_body() -> bytes:
    c = MetricFamily(name="req_total", type=COUNTER, help="Requests.")
    m = c.metric.add()
    m.label.add(name="code", value="200")
    m.counter.value = 7.0
    m.counter.exemplar.label.add(name="trace_id", value="c1")
    m.counter.exemplar.value = 1.0
    m.counter.exemplar.timestamp.seconds = 1_699_999_990
    m.counter.exemplar.timestamp.nanos = 500_000_000
    m2 = c.metric.add()
    m2.label.add(name="code", value="500")
    m2.counter.value = 2.0
    m2.counter.exemplar.label.add(name="trace_id", value="c2")
    m2.counter.exemplar.value = 4.0  # no timestamp: takes the scrape's

    h = MetricFamily(name="lat_seconds", type=HISTOGRAM, help="Latency.")
    hm = h.metric.add()
    hh = hm.histogram
    hh.schema = 0
    hh.zero_threshold = 1e-4
    hh.positive_span.add(offset=0, length=1)
    hh.positive_delta.extend([3])
    hh.sample_count = 3
    hh.sample_sum = 1.5
    b = hh.bucket.add(upper_bound=0.5, cumulative_count=1)
    b.exemplar.label.add(name="trace_id", value="b1")
    b.exemplar.value = 0.4
    hh.bucket.add(upper_bound=1.0, cumulative_count=3)
    e1 = hh.exemplars.add(value=0.7)
    e1.label.add(name="trace_id", value="n1")
    e1.timestamp.seconds = 1_699_999_995
    e2 = hh.exemplars.add(value=0.9)  # no timestamp: dropped for a native histogram, as Prometheus does
    e2.label.add(name="trace_id", value="n2")
    return encode_delimited([c, h])


def test_protobuf_exemplars_counter_classic_bucket_and_native(exp: Exporter) -> None:
    exp.set(body=_proto_body(), content_type=PROTO_CONTENT_TYPE)
    coll = Collector()
    loop = make_loop(exp.address, coll, scrape_native_histograms=True, scrape_classic_histograms=True)
    scrape(loop, T0, T0 + 5)
    inst = exp.address
    for i in (0, 1):
        assert coll.value("up", i) == 1.0, loop.status.last_error
        ts = TS + 5000 * i
        assert exemplars(coll, i) == [
            ({"__name__": "req_total", "code": "200", "job": "job1", "instance": inst},
             1_699_999_990_500, 1.0, {"trace_id": "c1"}),
            ({"__name__": "req_total", "code": "500", "job": "job1", "instance": inst},
             ts, 4.0, {"trace_id": "c2"}),
            ({"__name__": "lat_seconds", "job": "job1", "instance": inst},
             1_699_999_995_000, 0.7, {"trace_id": "n1"}),
            ({"__name__": "lat_seconds_bucket", "le": "0.5", "job": "job1", "instance": inst},
             ts, 0.4, {"trace_id": "b1"}),
        ]


def test_protobuf_classic_only_bucket_exemplar(exp: Exporter) -> None:
    exp.set(body=_proto_body(), content_type=PROTO_CONTENT_TYPE)
    coll = Collector()
    scrape(make_loop(exp.address, coll, scrape_protocols=["PrometheusProto"]), T0)
    assert coll.value("up") == 1.0
    got = [(s["__name__"], s.get("le"), e["trace_id"]) for s, _, _, e in exemplars(coll)]
    assert got == [("req_total", None, "c1"), ("req_total", None, "c2"), ("lat_seconds_bucket", "0.5", "b1")]
