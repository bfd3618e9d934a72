"""Exemplars through the WAL and Remote-Write 1.0 / 2.0, into a real Prometheus 2.42 with exemplar storage."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from agent.labels import as_labels
from agent.remote import RemoteWrite, WALOptions
from agent.remote.codec import encode_exemplar_timeseries, encode_labels
from agent.remote.codec_v2 import SeriesV2, encode_v2
from agent.storage import SampleBatch
from agent.wal import WAL, record
from agent.wal.reader import read_all
from agent.wal.segment import list_segments, segment_path
from tests.procs import eventually, prometheus
from tests.protobuf.prompb import RequestV2, WriteRequest, decompress
from tests.remote.helpers import endpoint, now_ms
from tests.remote.receiver import Receiver

REQS = (("__name__", "shoal_requests_total"), ("job", "t"))
TRACE = (("span_id", "00f067aa0ba902b7"), ("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"))


def _batch(ts: int, value: float, ex_value: float | None = None, ex_labels=TRACE) -> SampleBatch:  # noqa: ANN001
    b = SampleBatch()
    b.add(REQS, ts, value)
    if ex_value is not None:
        b.exemplars.append((REQS, ts, ex_value, ex_labels))
    return b


def test_exemplar_record_round_trip_and_corruption():
    payload = record.encode_exemplars([3, 9], [1_700_000_000_000, -1], [0.25, -7.5], [TRACE, ()])
    refs, ts, vals, labels = record.decode_exemplars(payload)
    assert list(refs) == [3, 9] and list(ts) == [1_700_000_000_000, -1] and list(vals) == [0.25, -7.5]
    assert labels == [TRACE, ()]
    for bad in (payload[:-1], payload + b"\0", payload[:20], b"\x01"):
        with pytest.raises(record.RecordError):
            record.decode_exemplars(bad)


def test_wal_writes_exemplars_after_the_samples_of_their_batch(tmp_path: Path):
    d = tmp_path / "wal"
    w = WAL(d)
    w.open()
    w.append([REQS], [1000], [5.0], None, None, [(REQS, 1000, 0.3, TRACE)])
    only = (("__name__", "only_exemplar"),)
    w.append([], [], [], None, None, [(only, 2000, 1.0, ())])  # a series known from its exemplar alone
    ref, ref2 = w.ref(REQS), w.ref(only)
    w.close()
    kinds, exs = [], []
    for s in list_segments(d):
        for rec in read_all(segment_path(d, s)).records:
            kinds.append(rec.type)
            if rec.type == record.EXEMPLARS:
                r, t, v, lb = record.decode_exemplars(rec.payload)
                exs.extend(zip(r, t, v, lb, strict=True))
    assert kinds == [record.SERIES, record.SAMPLES, record.EXEMPLARS, record.SERIES, record.EXEMPLARS]
    assert exs == [(ref, 1000, 0.3, TRACE), (ref2, 2000, 1.0, ())]
    w2 = WAL(d)
    w2.open()
    assert as_labels(w2.labels_by_ref[ref2]) == only
    w2.close()


def test_rw1_and_rw2_exemplars_decode_with_the_protobuf_library():
    body = encode_exemplar_timeseries(encode_labels(REQS), 1_700_000_000_123, 0.75, TRACE)
    req = WriteRequest()
    req.ParseFromString(body)
    (ts,) = req.timeseries
    assert tuple((x.name, x.value) for x in ts.labels) == REQS and not ts.samples
    (ex,) = ts.exemplars
    assert (ex.timestamp, ex.value) == (1_700_000_000_123, 0.75)
    assert tuple((x.name, x.value) for x in ex.labels) == TRACE

    s = SeriesV2(tuple(x for p in REQS for x in p), None)
    body = encode_v2([s], [1000], [5.0], exemplars=[(s, 1000, 0.75, TRACE), (s, 1001, 1.0, ())])
    r2 = RequestV2()
    r2.ParseFromString(body)
    sy = list(r2.symbols)
    assert len(r2.timeseries) == 3
    e1, e2 = r2.timeseries[1].exemplars[0], r2.timeseries[2].exemplars[0]
    assert [sy[x] for x in r2.timeseries[1].labels_refs] == list(s.strings)
    assert [sy[x] for x in e1.labels_refs] == [x for p in TRACE for x in p]
    assert (e1.timestamp, e1.value, e2.timestamp, list(e2.labels_refs)) == (1000, 0.75, 1001, [])


def _exemplars_received(rx: Receiver) -> list[tuple[tuple, int, float, tuple]]:
    out = []
    for req in rx.requests:
        wr = WriteRequest()
        wr.ParseFromString(decompress(req.body))
        for ts in wr.timeseries:
            for ex in ts.exemplars:
                out.append((tuple((x.name, x.value) for x in ts.labels), ex.timestamp, ex.value,
                            tuple((x.name, x.value) for x in ex.labels)))
    return out


@pytest.mark.parametrize("send", [True, False])
def test_queue_sends_exemplars_only_with_send_exemplars(tmp_path: Path, send: bool):
    async def main():
        rx = await Receiver().start()
        ep = endpoint(rx.url, min_shards=2, max_shards=2, max_samples_per_send=3)
        ep.send_exemplars = send
        rw = RemoteWrite(tmp_path / "wal", [ep], {"cluster": "c"}, WALOptions())
        await rw.start()
        t0 = now_ms()
        for i in range(5):
            rw.append(_batch(t0 + i * 1000, float(i), ex_value=i + 0.5))
        assert await rw.flush()
        st = rw.status()["endpoints"][0]
        await rw.stop()
        await rx.stop()
        return rx, st, t0

    rx, st, t0 = asyncio.run(main())
    got = _exemplars_received(rx)
    lb = (("__name__", "shoal_requests_total"), ("cluster", "c"), ("job", "t"))
    assert st["samples_sent"] == 5
    if send:
        assert got == [(lb, t0 + i * 1000, i + 0.5, TRACE) for i in range(5)]
        assert st["exemplars_sent"] == 5
        # Each exemplar travels after (or with) its series' sample, never before it.
        first_sample = first_ex = None
        for n, req in enumerate(rx.requests):
            wr = WriteRequest()
            wr.ParseFromString(decompress(req.body))
            for ts in wr.timeseries:
                if ts.samples and first_sample is None:
                    first_sample = n
                if ts.exemplars and first_ex is None:
                    first_ex = n
        assert first_sample is not None and first_ex is not None and first_sample <= first_ex
    else:
        assert got == [] and st["exemplars_sent"] == 0


@pytest.mark.integration
def test_exemplars_reach_prometheus_242(tmp_path: Path):
    """Prometheus 2.42 with --enable-feature=exemplar-storage answers /api/v1/query_exemplars with them."""
    with prometheus(tmp_path / "prom", ["--enable-feature=exemplar-storage"]) as prom:

        async def main():
            ep = endpoint(prom.url + "/api/v1/write")
            rw = RemoteWrite(tmp_path / "wal", [ep], {}, WALOptions())
            await rw.start()
            t = now_ms() - 5000
            rw.append(_batch(t, 10.0, ex_value=0.125))
            rw.append(_batch(t + 1000, 11.0, ex_value=2.5, ex_labels=(("trace_id", "abc123"),)))
            rw.append(_batch(t + 2000, 12.0))  # no exemplar this time
            assert await rw.flush()
            st = rw.status()["endpoints"][0]
            await rw.stop()
            return st, t

        st, t = asyncio.run(main())
        assert st["exemplars_sent"] == 2 and st["samples_failed"] == 0, st

        def exemplars() -> list[dict]:
            r = httpx.get(prom.url + "/api/v1/query_exemplars",
                          params={"query": "shoal_requests_total", "start": str(t / 1000 - 60),
                                  "end": str(time.time() + 60)}, timeout=10)
            r.raise_for_status()
            data = r.json()["data"]
            return data[0]["exemplars"] if data else []

        got = eventually(exemplars, timeout=20)
        assert [(e["labels"], float(e["value"]), round(e["timestamp"] * 1000)) for e in got] == [
            (dict(TRACE), 0.125, t),
            ({"trace_id": "abc123"}, 2.5, t + 1000),
        ]
