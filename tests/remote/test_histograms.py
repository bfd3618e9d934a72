"""Native histograms through the WAL and remote write (1.0 and 2.0), into a real Prometheus 2.42."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import pytest

from agent.labels import as_labels
from agent.remote import RemoteWrite, WALOptions
from agent.remote.codec import encode_histogram_timeseries, encode_labels
from agent.remote.codec_v2 import V2, SeriesV2, encode_v2
from agent.storage import STALE_NAN, Histogram, SampleBatch, is_stale_nan
from agent.wal import WAL, record
from agent.wal import histogram as hist
from agent.wal.reader import read_all
from agent.wal.segment import list_segments, segment_path
from tests.procs import eventually, prometheus, query
from tests.protobuf.prompb import HistogramV1, RequestV2, WriteRequest, decompress
from tests.remote.helpers import endpoint, now_ms
from tests.remote.receiver import Receiver

INT_H = Histogram(
    count=17, sum=42.5, schema=1, zero_threshold=0.001, zero_count=2,
    positive_spans=((0, 2), (2, 3)), positive_counts=(1, 4, 3, 0, 5),
    negative_spans=((-2, 1),), negative_counts=(2,), counter_reset_hint=2,
)
FLOAT_H = Histogram(
    count=3.5, sum=-1.25, schema=0, zero_count=0.5, positive_spans=((1, 2),), positive_counts=(1.5, 1.5),
    is_float=True, counter_reset_hint=3,
)
NHCB = Histogram(count=4, sum=9, schema=-53, positive_spans=((0, 3),), positive_counts=(1, 0, 3),
                 custom_values=(0.5, 1.0))
EMPTY = Histogram(count=0, sum=0, schema=3)

LAT = (("__name__", "shoal_latency_seconds"), ("job", "t"))


def _hist_batch(labels, ts: int, h: Histogram, floats=()) -> SampleBatch:  # noqa: ANN001
    b = SampleBatch()
    for lb, v in floats:
        b.add(lb, ts, v)
    b.histograms.append((labels, ts, h))
    return b


def _from_proto(hp, is_float: bool) -> Histogram:  # noqa: ANN001
    """A decoded protobuf Histogram back to absolute counts, as Prometheus reads it."""
    def counts(deltas, floats):  # noqa: ANN001, ANN202
        if is_float:
            return tuple(floats)
        out, cur = [], 0
        for d in deltas:
            cur += d
            out.append(float(cur))
        return tuple(out)

    return Histogram(
        count=hp.count_float if is_float else float(hp.count_int),
        sum=hp.sum,
        schema=hp.schema,
        zero_threshold=hp.zero_threshold,
        zero_count=hp.zero_count_float if is_float else float(hp.zero_count_int),
        positive_spans=tuple((s.offset, s.length) for s in hp.positive_spans),
        positive_counts=counts(hp.positive_deltas, hp.positive_counts),
        negative_spans=tuple((s.offset, s.length) for s in hp.negative_spans),
        negative_counts=counts(hp.negative_deltas, hp.negative_counts),
        counter_reset_hint=hp.reset_hint,
        is_float=is_float,
        custom_values=tuple(hp.custom_values),
    )


# ------------------------------------------------------------------ WAL record


def test_histogram_record_round_trip_and_corruption():
    items = [(1, 1_700_000_000_000, INT_H), (2, -7, FLOAT_H), (3, 5, NHCB), (4, 6, EMPTY),
             (5, 7, Histogram(count=2**40, sum=1, schema=0, positive_spans=((0, 2),),
                              positive_counts=(2**40 - 3, 3)))]
    payload = record.encode_histograms(items)
    assert record.decode_histograms(payload) == items
    assert record.histograms_count(payload) == 5
    # An integer histogram's buckets are varint deltas: one byte each here, not 8.
    small = record.encode_histograms([(1, 0, INT_H)])
    assert len(small) < 4 + 20 + 5 * 9 + 2 * 6 + 8 + 3 * 2
    for bad in (payload[:-1], payload + b"\0", payload[:30], b"\x01"):
        with pytest.raises(record.RecordError):
            record.decode_histograms(bad)
    # The stored body is the remote-write message: the protobuf library reads it.
    _refs, _ts, bodies = record.decode_histogram_bodies(payload)
    m = HistogramV1()
    m.ParseFromString(bodies[0])
    assert _from_proto(m, False) == INT_H and m.timestamp == 0
    assert hist.decode(bodies[1]) == (FLOAT_H, 0)


def test_wal_appends_replays_and_checkpoints_histogram_series(tmp_path: Path):
    d = tmp_path / "wal"
    w = WAL(d)
    w.open()
    other = (("__name__", "other"), ("job", "t"))
    w.append([other], [10], [1.0], None, [(LAT, 10, INT_H), (other, 10, FLOAT_H)])
    w.append([], [], [], None, [(LAT, 20, NHCB)])
    ref = w.ref(LAT)
    w.close()
    got = []
    for s in list_segments(d):
        for rec in read_all(segment_path(d, s)).records:
            if rec.type == record.HISTOGRAMS:
                got.extend(record.decode_histograms(rec.payload))
    assert got == [(ref, 10, INT_H), (w.ref(other), 10, FLOAT_H), (ref, 20, NHCB)]

    w2 = WAL(d)
    w2.open()
    assert as_labels(w2.labels_by_ref[ref]) == LAT  # replay learnt the histogram-only series
    w2.append([], [], [], None, [(LAT, 30, INT_H)])
    assert w2.ref(LAT) == ref  # same ref after a restart
    w2.new_generation()  # the truncation cycle: LAT is current, kept by the checkpoint
    keep, _gone = w2.checkpoint_series(w2.segment - 1)
    w2.write_checkpoint(w2.segment - 1, keep)
    w2.close()
    w3 = WAL(d)
    w3.open()
    assert as_labels(w3.labels_by_ref[ref]) == LAT
    w3.close()


# ------------------------------------------------------------------- encoding


def test_rw1_histogram_timeseries_decodes_with_the_protobuf_library():
    body = b"".join(encode_histogram_timeseries(encode_labels(LAT), 1_700_000_000_000 + i, hist.encode(h))
                    for i, h in enumerate((INT_H, FLOAT_H, NHCB, EMPTY)))
    req = WriteRequest()
    req.ParseFromString(body)
    assert len(req.timeseries) == 4
    for i, (ts, h) in enumerate(zip(req.timeseries, (INT_H, FLOAT_H, NHCB, EMPTY), strict=True)):
        assert tuple((lb.name, lb.value) for lb in ts.labels) == LAT
        assert not ts.samples
        (hp,) = ts.histograms
        assert hp.timestamp == 1_700_000_000_000 + i
        assert hp.WhichOneof("count") == ("count_float" if h.is_float else "count_int")
        assert hp.WhichOneof("zero_count") == ("zero_count_float" if h.is_float else "zero_count_int")
        assert _from_proto(hp, h.is_float) == h
    assert list(req.timeseries[0].histograms[0].positive_deltas) == [1, 3, -1, -3, 5]


def test_rw2_histograms_decode_with_the_protobuf_library():
    s = SeriesV2(("__name__", "shoal_latency_seconds", "job", "t"), (3, "Latency.", "seconds"))
    f = SeriesV2(("__name__", "up", "job", "t"), None)
    body = encode_v2([f], [1000], [1.0], histograms=[(s, 2000, hist.encode(INT_H)), (s, 3000, hist.encode(FLOAT_H))])
    req = RequestV2()
    req.ParseFromString(body)
    sy = list(req.symbols)
    assert len(req.timeseries) == 3
    a, b, c = req.timeseries
    assert [s.value for s in a.samples] == [1.0] and not a.histograms
    for ts, h, t in ((b, INT_H, 2000), (c, FLOAT_H, 3000)):
        r = list(ts.labels_refs)
        assert [sy[x] for x in r] == list(s.strings)
        assert not ts.samples
        (hp,) = ts.histograms
        assert hp.timestamp == t and _from_proto(hp, h.is_float) == h
        assert ts.metadata.type == 3 and sy[ts.metadata.help_ref] == "Latency."


# ---------------------------------------------------------------------- queue


def _decoded(rx: Receiver) -> list[tuple[tuple, str, int, object]]:
    """Every accepted 1.0 request's series in arrival order: (labels, kind, ts, value or Histogram)."""
    out = []
    for req in rx.requests:
        wr = WriteRequest()
        wr.ParseFromString(decompress(req.body))
        for ts in wr.timeseries:
            lb = tuple((x.name, x.value) for x in ts.labels)
            for s in ts.samples:
                out.append((lb, "float", s.timestamp, s.value))
            for hp in ts.histograms:
                out.append((lb, "hist", hp.timestamp, _from_proto(hp, hp.WhichOneof("count") == "count_float")))
    return out


def test_queue_sends_histograms_in_series_order_with_stale_markers(tmp_path: Path):
    """Histogram samples, then a float stale marker of the same series, leave in that order; one per batch."""

    async def main():
        rx = await Receiver().start()
        ep = endpoint(rx.url, min_shards=3, max_shards=3, max_samples_per_send=4)
        ep.send_native_histograms = True
        rw = RemoteWrite(tmp_path / "wal", [ep], {"cluster": "c"}, WALOptions())
        await rw.start()
        t0 = now_ms()
        up = (("__name__", "up"), ("job", "t"))
        for i in range(6):
            rw.append(_hist_batch(LAT, t0 + i * 1000, INT_H, floats=[(up, 1.0)]))
        stale = SampleBatch()
        stale.add(LAT, t0 + 6000, STALE_NAN)
        rw.append(stale)
        rw.append(_hist_batch(LAT, t0 + 7000, FLOAT_H))
        assert await rw.flush()
        st = rw.status()["endpoints"][0]
        await rw.stop()
        await rx.stop()
        return rx, st, t0

    rx, st, t0 = asyncio.run(main())
    lat_c = (("__name__", "shoal_latency_seconds"), ("cluster", "c"), ("job", "t"))
    got = [x for x in _decoded(rx) if x[0] == lat_c]
    assert [(k, t - t0) for _l, k, t, _v in got] == [("hist", i * 1000) for i in range(6)] + [
        ("float", 6000), ("hist", 7000)]
    assert all(v == INT_H for _l, k, _t, v in got[:6])
    assert is_stale_nan(got[6][3]) and got[7][3] == FLOAT_H
    # A request never holds two samples of one series (the crash-safety rule covers histograms).
    for req in rx.requests:
        wr = WriteRequest()
        wr.ParseFromString(decompress(req.body))
        names = [tuple((x.name, x.value) for x in ts.labels) for ts in wr.timeseries]
        assert len(names) == len(set(names))
    assert st["histograms_sent"] == 7 and st["samples_sent"] == 7
    assert st["histograms_dropped"] == {}


def test_v2_queue_sends_histograms_and_counts_them_written(tmp_path: Path):
    async def main():
        rx = await Receiver(speaks_v2=True).start()
        ep = endpoint(rx.url, max_samples_per_send=3)
        ep.send_native_histograms = True
        ep.protobuf_message = V2
        rw = RemoteWrite(tmp_path / "wal", [ep], {}, WALOptions())
        await rw.start()
        t0 = now_ms()
        up = (("__name__", "up"), ("job", "t"))
        for i in range(4):
            rw.append(_hist_batch(LAT, t0 + i, INT_H if i % 2 else FLOAT_H, floats=[(up, float(i))]))
        assert await rw.flush()
        st = rw.status()["endpoints"][0]
        await rw.stop()
        await rx.stop()
        return rx, st, t0

    rx, st, t0 = asyncio.run(main())
    assert st["protocol"] == V2 and st["histograms_sent"] == 4 and st["samples_sent"] == 4
    assert st["samples_dropped"] == {} and st["histograms_dropped"] == {}
    hs = []
    for req in rx.v2_requests:
        sy = list(req.symbols)
        for ts in req.timeseries:
            for hp in ts.histograms:
                assert [sy[x] for x in ts.labels_refs] == [x for p in LAT for x in p]
                hs.append((hp.timestamp - t0, _from_proto(hp, hp.WhichOneof("count") == "count_float")))
    assert hs == [(i, INT_H if i % 2 else FLOAT_H) for i in range(4)]


def test_histograms_dropped_and_counted_without_send_native_histograms(tmp_path: Path):
    async def main():
        rx = await Receiver().start()
        ep = endpoint(rx.url)
        assert ep.send_native_histograms is False  # Alloy's default
        rw = RemoteWrite(tmp_path / "wal", [ep], {}, WALOptions())
        await rw.start()
        up = (("__name__", "up"), ("job", "t"))
        for i in range(3):
            rw.append(_hist_batch(LAT, now_ms() + i, INT_H, floats=[(up, 1.0)]))
        assert await rw.flush()
        st = rw.status()["endpoints"][0]
        await rw.stop()
        await rx.stop()
        return rx, st

    rx, st = asyncio.run(main())
    kinds = [k for _l, k, _t, _v in _decoded(rx)]
    assert kinds == ["float"] * 3
    assert st["histograms_dropped"] == {"native_histograms_disabled": 3}
    assert st["histograms_sent"] == 0


def test_histograms_resume_after_restart_without_resending(tmp_path: Path):
    """A restart resumes inside histogram records: nothing acknowledged is sent again."""

    async def run(n_from: int, n_to: int, t0: int) -> Receiver:
        rx = await Receiver().start()
        ep = endpoint(rx.url, min_shards=2, max_shards=2, max_samples_per_send=3)
        ep.send_native_histograms = True
        rw = RemoteWrite(tmp_path / "wal", [ep], {}, WALOptions())
        await rw.start()
        for i in range(n_from, n_to):
            b = SampleBatch()
            for j in range(5):
                b.histograms.append(((("__name__", "h"), ("j", str(j))), t0 + i * 1000, INT_H))
            rw.append(b)
        assert await rw.flush()
        await rw.stop()
        await rx.stop()
        return rx

    t0 = now_ms()
    first = asyncio.run(run(0, 4, t0))
    second = asyncio.run(run(4, 6, t0))
    a = [(lb, t) for lb, _k, t, _v in _decoded(first)]
    b = [(lb, t) for lb, _k, t, _v in _decoded(second)]
    assert len(a) == 20 and len(b) == 10
    assert not set(a) & set(b)
    assert {t - t0 for _lb, t in b} == {4000, 5000}


# ------------------------------------------------------------ real Prometheus


def _range_has(url: str, expr: str, want: float) -> bool:
    res = query(url, expr)
    return bool(res) and math.isclose(float(res[0]["value"][1]), want)


@pytest.mark.integration
def test_native_histograms_reach_prometheus_242(tmp_path: Path):
    """RW 1.0 integer histograms land in Prometheus 2.42 (--enable-feature=native-histograms)."""
    with prometheus(tmp_path / "prom", ["--enable-feature=native-histograms"]) as prom:

        async def main():
            ep = endpoint(prom.url + "/api/v1/write")
            ep.send_native_histograms = True
            rw = RemoteWrite(tmp_path / "wal", [ep], {}, WALOptions())
            await rw.start()
            t = now_ms()
            rw.append(_hist_batch(LAT, t - 2000, INT_H))
            later = Histogram(count=20, sum=50.0, schema=1, zero_threshold=0.001, zero_count=2,
                              positive_spans=((0, 2), (2, 3)), positive_counts=(1, 4, 3, 3, 5),
                              negative_spans=((-2, 1),), negative_counts=(2,))
            rw.append(_hist_batch(LAT, t - 1000, later))
            rw.append(_hist_batch((("__name__", "shoal_float_hist"), ("job", "t")), t - 1000, FLOAT_H))
            assert await rw.flush()
            st = rw.status()["endpoints"][0]
            await rw.stop()
            return st

        st = asyncio.run(main())
        assert st["histograms_sent"] == 3 and st["samples_failed"] == 0, st
        eventually(lambda: _range_has(prom.url, "histogram_count(shoal_latency_seconds)", 20.0), timeout=20)
        assert _range_has(prom.url, "histogram_sum(shoal_latency_seconds)", 50.0)
        # The bucket layout survived: schema 1 buckets are (2^((i-1)/2), 2^(i/2)], so the
        # observations between 1 and 10 are those of buckets 1, 4, 5, 6: (4 + 3 + 3 + 5) / 20.
        assert _range_has(prom.url, "histogram_fraction(1, 10, shoal_latency_seconds)", 15 / 20)
        # The earlier sample is there too, at its own timestamp.
        res = query(prom.url, "histogram_count(shoal_latency_seconds)", at=time.time() - 1.6)
        assert res and float(res[0]["value"][1]) == 17.0
        # Float histograms (count_float, counts instead of deltas) are accepted by 2.42 too.
        assert _range_has(prom.url, "histogram_count(shoal_float_hist)", 3.5)
        assert _range_has(prom.url, "histogram_sum(shoal_float_hist)", -1.25)


@pytest.mark.integration
def test_prometheus_without_native_histograms_drops_the_batch_not_the_queue(tmp_path: Path):
    """Prometheus without the feature answers 500 "native histograms are disabled" forever: dropped, counted."""
    with prometheus(tmp_path / "prom") as prom:

        async def main():
            ep = endpoint(prom.url + "/api/v1/write", max_shards=1)
            ep.send_native_histograms = True
            rw = RemoteWrite(tmp_path / "wal", [ep], {}, WALOptions())
            await rw.start()
            t = now_ms()
            up = (("__name__", "shoal_up"), ("job", "t"))
            rw.append(_hist_batch(LAT, t - 2000, INT_H, floats=[(up, 1.0)]))
            assert await rw.flush()
            later = SampleBatch()
            later.add(up, t - 1000, 2.0)
            rw.append(later)
            assert await rw.flush()
            st = rw.status()["endpoints"][0]
            await rw.stop()
            return st

        st = asyncio.run(main())
        assert st["samples_failed_by_reason"] == {"http_500_native_histograms_disabled": 2}, st
        assert "native histograms are disabled" in st["last_error"]
        eventually(lambda: _range_has(prom.url, "shoal_up", 2.0), timeout=20)


def test_histograms_too_old_or_relabelled_away_are_counted(tmp_path: Path):
    from agent import relabel

    async def main():
        rx = await Receiver().start()
        ep = endpoint(rx.url, sample_age_limit=60.0)
        ep.send_native_histograms = True
        ep.write_relabel_rules = [relabel.Rule(source_labels=["__name__"], regex="dropped_.*", action="drop")]
        rw = RemoteWrite(tmp_path / "wal", [ep], {}, WALOptions())
        await rw.start()
        t = now_ms()
        rw.append(_hist_batch(LAT, t - 3_600_000, INT_H))  # an hour old: past sample_age_limit
        rw.append(_hist_batch((("__name__", "dropped_h"),), t, INT_H))
        rw.append(_hist_batch(LAT, t, NHCB))
        assert await rw.flush()
        st = rw.status()["endpoints"][0]
        await rw.stop()
        await rx.stop()
        return rx, st, t

    rx, st, t = asyncio.run(main())
    assert [(k, ts, v) for _l, k, ts, v in _decoded(rx)] == [("hist", t, NHCB)]
    assert st["histograms_dropped"] == {"too_old": 1, "dropped_series": 1}
    assert st["histograms_sent"] == 1


def test_fallback_to_v1_re_encodes_histograms_from_the_batch(tmp_path: Path):
    """A 2.0 queue facing a 1.0-only receiver re-sends the same batch as 1.0, histograms included."""

    async def main():
        rx = await Receiver(speaks_v2=False).start()
        ep = endpoint(rx.url)
        ep.send_native_histograms = True
        ep.protobuf_message = V2
        rw = RemoteWrite(tmp_path / "wal", [ep], {}, WALOptions())
        await rw.start()
        t = now_ms()
        rw.append(_hist_batch(LAT, t, INT_H, floats=[((("__name__", "up"),), 1.0)]))
        assert await rw.flush()
        st = rw.status()["endpoints"][0]
        await rw.stop()
        await rx.stop()
        return rx, st, t

    rx, st, t = asyncio.run(main())
    assert st["protocol"] == "prometheus.WriteRequest"
    v1 = [r for r in rx.requests if "write.v2" not in r.headers.get("content-type", "")]
    assert len(v1) == 1
    got = []
    wr = WriteRequest()
    wr.ParseFromString(decompress(v1[0].body))
    for ts in wr.timeseries:
        got += [("float", s.timestamp) for s in ts.samples] + [("hist", h.timestamp) for h in ts.histograms]
    assert sorted(got) == [("float", t), ("hist", t)]
    assert st["histograms_sent"] == 1 and st["samples_sent"] == 1


def test_a_same_timestamp_copy_after_a_cut_in_one_record_is_dropped_as_for_floats(tmp_path: Path):
    """Histograms share the dispatch loop with floats: relabel-made copies keep the first, even across a cut."""
    other = (("__name__", "shoal_latency_seconds"), ("job", "u"))

    async def main():
        rx = await Receiver().start()
        ep = endpoint(rx.url, max_samples_per_send=2)
        ep.send_native_histograms = True
        rw = RemoteWrite(tmp_path / "wal", [ep], {}, WALOptions())
        await rw.start()
        t0 = now_ms()
        b = SampleBatch()
        b.histograms += [(LAT, t0, INT_H), (other, t0, INT_H), (LAT, t0, FLOAT_H)]  # a cut after the second
        rw.append(b)
        assert await rw.flush()
        st = rw.status()["endpoints"][0]
        await rw.stop()
        await rx.stop()
        return rx, st

    rx, st = asyncio.run(main())
    got = [(lb, v) for lb, _k, _t, v in _decoded(rx)]
    assert got == [(LAT, INT_H), (other, INT_H)]
    assert st["histograms_sent"] == 2 and st["histograms_dropped"] == {"duplicate_timestamp": 1}
