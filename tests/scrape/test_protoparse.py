"""The protobuf exposition decoder: conformance payloads, every metric type, native histograms, bad input."""

from __future__ import annotations

import gzip
import math
import random

import pytest

from agent.scrape import nativehist
from agent.scrape.protoparse import ProtoError, format_om_float, parse_protobuf
from agent.scrape.textparse import parse_text
from agent.storage import Histogram
from tests.conftest import CONFORMANCE
from tests.protobuf.metrics_pb import (
    COUNTER,
    GAUGE,
    GAUGE_HISTOGRAM,
    HISTOGRAM,
    SUMMARY,
    UNTYPED,
    MetricFamily,
    PackedMetricFamily,
    decode_delimited,
    encode_delimited,
)

EXPFMT = CONFORMANCE / "exposition" / "prometheus-common-expfmt"


def lab(**kw: str) -> tuple:
    return tuple(sorted(kw.items()))


def series(exp) -> dict:  # noqa: ANN001
    return {s.labels: s.value for s in exp.samples}


# ---------------------------------------------------------------- conformance payloads


def test_expfmt_protobuf_matches_the_text_payload() -> None:
    """prometheus/common's testdata: the protobuf payload holds the same series as the text one."""
    pb = parse_protobuf((EXPFMT / "protobuf").read_bytes())
    txt = parse_text((EXPFMT / "text").read_bytes())
    got, want = series(pb), series(txt)
    assert len(got) == 248
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert got[k] == v or (math.isnan(v) and math.isnan(got[k])), k
    assert pb.metadata == txt.metadata
    q = lab(__name__="http_request_duration_microseconds", handler="/", quantile="0.99")
    assert q in got and got[q] == want[q]
    assert lab(__name__="http_request_duration_microseconds_count", handler="/") in got
    assert pb.metadata["process_virtual_memory_bytes"].type == "gauge"


def test_expfmt_protobuf_gz_is_the_same_payload() -> None:
    body = gzip.decompress((EXPFMT / "protobuf.gz").read_bytes())
    assert series(parse_protobuf(body)) == series(parse_protobuf((EXPFMT / "protobuf").read_bytes()))


def test_expfmt_multimessage_matches_the_protobuf_library() -> None:
    body = (EXPFMT / "protobuf-multimessage").read_bytes()
    exp = parse_protobuf(body)
    want = {}
    for mf in decode_delimited(body):
        for m in mf.metric:
            v = {COUNTER: m.counter.value, GAUGE: m.gauge.value, UNTYPED: m.untyped.value}[mf.type]
            want[lab(__name__=mf.name, **{p.name: p.value for p in m.label if p.value})] = v
    assert series(exp) == want
    assert len(want) == 6
    assert exp.metadata["swap_in"].type == "counter"
    assert exp.metadata["swap_free"].help == "Telegraf collected metric"


# ---------------------------------------------------------------- building payloads


def family(name: str, mtype: int, help: str = "", unit: str = "", cls=MetricFamily):  # noqa: ANN001, ANN201, A002
    mf = cls(name=name, type=mtype)
    if help:
        mf.help = help
    if unit:
        mf.unit = unit
    return mf


def add_metric(mf, labels: dict[str, str] | None = None, ts: int = 0):  # noqa: ANN001, ANN201
    m = mf.metric.add()
    for k, v in (labels or {}).items():
        m.label.add(name=k, value=v)
    if ts:
        m.timestamp_ms = ts
    return m


def native_hist(h, *, schema=3, zt=1e-3, zero=2, pos=((-1, 2), (3, 1)), pos_d=(1, 2, -2),  # noqa: ANN001, ANN201
                neg=((0, 1),), neg_d=(4,), classic=()) -> object:
    h.schema = schema
    h.zero_threshold = zt
    h.zero_count = zero
    for off, n in pos:
        h.positive_span.add(offset=off, length=n)
    h.positive_delta.extend(pos_d)
    for off, n in neg:
        h.negative_span.add(offset=off, length=n)
    h.negative_delta.extend(neg_d)
    total = zero
    acc = 0
    for d in pos_d:
        acc += d
        total += acc
    acc = 0
    for d in neg_d:
        acc += d
        total += acc
    h.sample_count = total
    h.sample_sum = 12.5
    for ub, c in classic:
        h.bucket.add(upper_bound=ub, cumulative_count=c)
    return h


def test_counter_gauge_untyped_labels_timestamps_metadata() -> None:
    c = family("req_total", COUNTER, help="Requests.", unit="")
    m = add_metric(c, {"code": "200", "path": "/x"})
    m.counter.value = 7
    m.counter.created_timestamp.seconds = 1_700_000_000
    m.counter.created_timestamp.nanos = 250_000_000
    m.counter.exemplar.value = 1.5
    m.counter.exemplar.label.add(name="trace_id", value="abc")
    add_metric(c, {"code": "500", "empty": ""}, ts=1234).counter.value = 1
    g = family("temp_celsius", GAUGE, help="Temp.", unit="celsius")
    add_metric(g).gauge.value = -3.25
    u = family("thing", UNTYPED)
    add_metric(u, {"a": "b"}).untyped.value = math.inf
    exp = parse_protobuf(encode_delimited([c, g, u]))
    s = {x.labels: (x.value, x.timestamp_ms) for x in exp.samples}
    assert s == {
        lab(__name__="req_total", code="200", path="/x"): (7.0, None),
        lab(__name__="req_total", code="500"): (1.0, 1234),
        lab(__name__="temp_celsius"): (-3.25, None),
        lab(__name__="thing", a="b"): (math.inf, None),
    }
    assert exp.created == {lab(__name__="req_total", code="200", path="/x"): 1_700_000_000_250}
    md = exp.metadata
    assert (md["req_total"].type, md["req_total"].help) == ("counter", "Requests.")
    assert (md["temp_celsius"].type, md["temp_celsius"].unit) == ("gauge", "celsius")
    assert md["thing"].type == "unknown"


def test_summary_series_and_quantile_formatting() -> None:
    f = family("rpc_seconds", SUMMARY)
    m = add_metric(f, {"svc": "a"})
    m.summary.sample_count = 10
    m.summary.sample_sum = 4.5
    for q, v in ((0.5, 0.3), (0.99, 1.25), (1.0, 2.0)):
        m.summary.quantile.add(quantile=q, value=v)
    m.summary.created_timestamp.seconds = 5
    exp = parse_protobuf(encode_delimited([f]))
    assert [(dict(x.labels), x.value) for x in exp.samples] == [
        ({"__name__": "rpc_seconds_count", "svc": "a"}, 10.0),
        ({"__name__": "rpc_seconds_sum", "svc": "a"}, 4.5),
        ({"__name__": "rpc_seconds", "svc": "a", "quantile": "0.5"}, 0.3),
        ({"__name__": "rpc_seconds", "svc": "a", "quantile": "0.99"}, 1.25),
        ({"__name__": "rpc_seconds", "svc": "a", "quantile": "1.0"}, 2.0),
    ]
    assert exp.created == {lab(__name__="rpc_seconds", svc="a"): 5000}


def test_classic_histogram_adds_inf_bucket_and_formats_le() -> None:
    f = family("lat_seconds", HISTOGRAM)
    m = add_metric(f)
    h = m.histogram
    h.sample_count = 9
    h.sample_sum = 3.0
    for ub, c in ((0.005, 1), (1.0, 4), (2.5, 6), (1e6, 8)):
        h.bucket.add(upper_bound=ub, cumulative_count=c)
    exp = parse_protobuf(encode_delimited([f]))
    got = [(dict(x.labels).get("le"), dict(x.labels)["__name__"], x.value) for x in exp.samples]
    assert got == [
        (None, "lat_seconds_count", 9.0),
        (None, "lat_seconds_sum", 3.0),
        ("0.005", "lat_seconds_bucket", 1.0),
        ("1.0", "lat_seconds_bucket", 4.0),
        ("2.5", "lat_seconds_bucket", 6.0),
        ("1e+06", "lat_seconds_bucket", 8.0),
        ("+Inf", "lat_seconds_bucket", 9.0),
    ]
    assert exp.histograms == []  # no native buckets: a classic histogram even with natives on


def test_classic_float_histogram_counts_and_explicit_inf() -> None:
    f = family("f", HISTOGRAM)
    h = add_metric(f).histogram
    h.sample_count_float = 2.5
    h.bucket.add(upper_bound=1, cumulative_count_float=1.5)
    h.bucket.add(upper_bound=math.inf, cumulative_count_float=2.5)
    h.bucket.add(upper_bound=math.inf, cumulative_count_float=99)  # after +Inf: ignored
    vals = {dict(x.labels).get("le", dict(x.labels)["__name__"]): x.value for x in parse_protobuf(
        encode_delimited([f])).samples}
    assert vals == {"f_count": 2.5, "f_sum": 0.0, "1.0": 1.5, "+Inf": 2.5}


@pytest.mark.parametrize("cls", [MetricFamily, PackedMetricFamily])
def test_native_histogram_deltas_to_absolute_counts(cls) -> None:  # noqa: ANN001
    f = family("nh_seconds", HISTOGRAM, cls=cls)
    native_hist(add_metric(f, {"x": "1"}, ts=777).histogram)
    exp = parse_protobuf(encode_delimited([f]))
    assert exp.samples == []
    assert exp.histograms == [
        (
            lab(__name__="nh_seconds", x="1"),
            Histogram(
                count=11,
                sum=12.5,
                schema=3,
                zero_threshold=1e-3,
                zero_count=2,
                positive_spans=((-1, 2), (3, 1)),
                positive_counts=(1, 3, 1),
                negative_spans=((0, 1),),
                negative_counts=(4,),
            ),
            777,
        )
    ]


def test_native_and_classic_both_only_when_asked() -> None:
    f = family("both", HISTOGRAM)
    native_hist(add_metric(f).histogram, classic=((1.0, 3), (10.0, 9)))
    body = encode_delimited([f])
    only_native = parse_protobuf(body)
    assert len(only_native.histograms) == 1 and only_native.samples == []
    both = parse_protobuf(body, classic_histograms=True)
    assert len(both.histograms) == 1
    assert {dict(s.labels).get("le") for s in both.samples} == {None, "1.0", "10.0", "+Inf"}
    classic_only = parse_protobuf(body, native_histograms=False)
    assert classic_only.histograms == []
    assert series(classic_only) == series(both)


def test_float_and_gauge_native_histograms() -> None:
    f = family("gh", GAUGE_HISTOGRAM)
    h = add_metric(f).histogram
    h.schema = 0
    h.zero_threshold = 0.5
    h.zero_count_float = 1.5
    h.sample_count_float = 4.0
    h.sample_sum = -2.0
    h.positive_span.add(offset=1, length=3)
    h.positive_count.extend([1.0, 0.0, 1.5])
    exp = parse_protobuf(encode_delimited([f]))
    (labels, hist, ts), = exp.histograms
    assert hist.is_float and hist.counter_reset_hint == 3
    assert (hist.count, hist.zero_count) == (4.0, 1.5)
    assert hist.positive_spans == ((1, 1), (1, 1)) and hist.positive_counts == (1.0, 1.5)  # compacted
    assert exp.metadata["gh"].type == "gaugehistogram"


def test_empty_native_histogram_with_noop_span() -> None:
    f = family("empty", HISTOGRAM)
    h = add_metric(f).histogram
    h.positive_span.add(offset=0, length=0)
    (_, hist, _), = parse_protobuf(encode_delimited([f])).histograms
    assert (hist.count, hist.positive_spans, hist.positive_counts) == (0, (), ())


@pytest.mark.parametrize(
    "kw, reason",
    [
        (dict(pos_d=(1, -5, 1)), "observation count of -4"),
        (dict(pos=((0, 5),)), "spans need 5 buckets, have 3"),
        (dict(pos=((0, 1), (-2, 2))), "span number 2 with offset -2"),
        (dict(schema=9 + 60), "unsupported native histogram schema"),
    ],
)
def test_invalid_native_histograms_are_rejected(kw: dict, reason: str) -> None:
    f = family("bad", HISTOGRAM)
    native_hist(add_metric(f).histogram, **kw)
    with pytest.raises(ValueError, match=reason):
        parse_protobuf(encode_delimited([f]))


def test_native_count_mismatch_rejected() -> None:
    f = family("bad", HISTOGRAM)
    h = native_hist(add_metric(f).histogram)
    h.sample_count = 3
    with pytest.raises(ValueError, match="observations found in buckets"):
        parse_protobuf(encode_delimited([f]))


def test_reserved_high_schema_reduced_to_8() -> None:
    f = family("fine", HISTOGRAM)
    native_hist(add_metric(f).histogram, schema=9, pos=((1, 2),), pos_d=(1, 1), neg=(), neg_d=())
    (_, hist, _), = parse_protobuf(encode_delimited([f])).histograms
    assert hist.schema == 8 and hist.positive_spans == ((1, 1),) and hist.positive_counts == (3,)


# ---------------------------------------------------------------- resolution reduction


def make_h(schema: int, spans, counts) -> Histogram:  # noqa: ANN001
    return Histogram(count=sum(counts), sum=1.0, schema=schema, positive_spans=tuple(spans),
                     positive_counts=tuple(counts))


def test_reduce_resolution_merges_as_prometheus() -> None:
    h = make_h(1, [(0, 4)], [1, 1, 1, 1])  # bucket indices 0..3
    r = nativehist.reduce_resolution(h, 0)
    assert (r.schema, r.positive_spans, r.positive_counts) == (0, ((0, 3),), (1, 2, 1))
    r2 = nativehist.reduce_resolution(h, -1)
    assert (r2.positive_spans, r2.positive_counts) == (((0, 2),), (1, 3))
    g = make_h(2, [(-5, 1), (6, 1)], [2, 3])  # indices -5 and 2, far apart
    r3 = nativehist.reduce_resolution(g, 1)
    assert (r3.positive_spans, r3.positive_counts) == (((-2, 1), (2, 1)), (2, 3))


def test_bucket_limit_and_min_bucket_factor() -> None:
    h = make_h(1, [(0, 4)], [1, 1, 1, 1])
    assert nativehist.limit(h, 8, 3).schema == 0
    assert nativehist.limit(h, 8, 2).schema == -1
    assert nativehist.limit(h, 8, 4) is h
    assert nativehist.pick_schema(0) == 8
    assert nativehist.pick_schema(1.1) == 2  # schema 3 grows by 1.09 < 1.1
    assert nativehist.pick_schema(2) == 0
    assert nativehist.pick_schema(1e9) == -4
    assert nativehist.limit(make_h(5, [(0, 2)], [1, 1]), 2, 0).schema == 2
    with pytest.raises(nativehist.HistogramError, match="bucket limit exceeded"):
        nativehist.limit(make_h(-4, [(0, 3)], [1, 1, 1]), 8, 2)


# ---------------------------------------------------------------- formatting


@pytest.mark.parametrize(
    "f, want",
    [
        (1.0, "1.0"), (0.0, "0.0"), (-1.0, "-1.0"), (0.5, "0.5"), (0.99, "0.99"), (2.0, "2.0"),
        (100000.0, "100000.0"), (1e6, "1e+06"), (2.5e6, "2.5e+06"), (0.0001, "0.0001"),
        (1e-05, "1e-05"), (1.5e-7, "1.5e-07"), (123456.0, "123456.0"), (1234567.0, "1.234567e+06"),
        (-0.25, "-0.25"), (math.inf, "+Inf"), (-math.inf, "-Inf"), (1e300, "1e+300"),
    ],
)
def test_format_om_float_as_go(f: float, want: str) -> None:
    assert format_om_float(f) == want


# ---------------------------------------------------------------- bad input


def test_unknown_type_bad_unit_and_empty_families() -> None:
    f = family("x", COUNTER)
    add_metric(f).counter.value = 1
    raw = bytearray(encode_delimited([f]))
    assert raw[4] == 0x18  # 1-byte length, name field (3 bytes), then the type field
    raw[5] = 9
    with pytest.raises(ProtoError, match="unknown metric type"):
        parse_protobuf(bytes(raw))
    bad_unit = family("x_seconds", GAUGE, unit="bytes")
    add_metric(bad_unit).gauge.value = 1
    with pytest.raises(ProtoError, match="unit 'bytes' not a suffix"):
        parse_protobuf(encode_delimited([bad_unit]))
    ok_unit = family("x_seconds_total", COUNTER, unit="seconds")
    add_metric(ok_unit).counter.value = 1
    empty = family("nothing", GAUGE, help="no metrics")
    exp = parse_protobuf(encode_delimited([empty, ok_unit]))
    assert "nothing" not in exp.metadata and exp.metadata["x_seconds_total"].unit == "seconds"


def test_truncated_and_corrupt_bodies_raise_with_position() -> None:
    body = (EXPFMT / "protobuf").read_bytes()
    with pytest.raises(ProtoError, match="metric family 1 at byte 0 .* only"):
        parse_protobuf(body[:40])
    with pytest.raises(ProtoError, match="protobuf: "):
        parse_protobuf(b"\x05\x0a\x03ab")
    with pytest.raises(ProtoError):
        parse_protobuf(b"\x03\x0b\x01\x02")  # wire type 3 (groups) is not used here


def test_invalid_utf8_and_duplicate_label_names() -> None:
    f = family("x", GAUGE)
    add_metric(f, {"a": "1"}).gauge.value = 1
    good = encode_delimited([f])
    bad = good.replace(b"\x0a\x01a\x12\x011", b"\x0a\x01a\x12\x01\xff")
    with pytest.raises(ProtoError, match="invalid UTF-8"):
        parse_protobuf(bad)
    d = family("x", GAUGE)
    add_metric(d, {"a": "1"}).label.add(name="a", value="2")
    with pytest.raises(ValueError, match="not unique"):
        parse_protobuf(encode_delimited([d]))


def test_random_corruption_never_crashes() -> None:
    """Flipped and cut bytes give a ProtoError/ValueError or a parse, never another exception."""
    f = family("h", HISTOGRAM)
    native_hist(add_metric(f, {"a": "b"}).histogram, classic=((1.0, 2),))
    s = family("s", SUMMARY)
    add_metric(s).summary.quantile.add(quantile=0.5, value=1)
    body = encode_delimited([f, s]) + (EXPFMT / "protobuf-multimessage").read_bytes()
    rnd = random.Random(4)
    outcomes = set()
    for _ in range(1500):
        b = bytearray(body)
        for _ in range(rnd.randint(1, 3)):
            b[rnd.randrange(len(b))] = rnd.randrange(256)
        if rnd.random() < 0.3:
            del b[rnd.randrange(len(b)):]
        try:
            parse_protobuf(bytes(b), classic_histograms=True)
            outcomes.add("ok")
        except ValueError:
            outcomes.add("error")
    assert outcomes == {"ok", "error"}


def test_labels_after_value_field_are_still_read() -> None:
    """Field order is free on the wire: a metric whose labels follow its value parses the same."""
    f = family("x", GAUGE)
    add_metric(f, {"a": "1", "b": "2"}).gauge.value = 5
    canonical = encode_delimited([f])
    m = f.metric[0]
    labels = b"".join(b"\x0a" + bytes([len(p.SerializeToString())]) + p.SerializeToString() for p in m.label)
    value = b"\x12\x09\x09" + m.gauge.SerializeToString()[1:]
    metric = value + labels
    fam = b"\x0a\x01x\x18\x01\x22" + bytes([len(metric)]) + metric
    odd = bytes([len(fam)]) + fam
    assert series(parse_protobuf(odd)) == series(parse_protobuf(canonical)) == {
        lab(__name__="x", a="1", b="2"): 5.0
    }
