"""Remote-Write 2.0: the encoder against the protobuf library, a 2.0 receiver, the fallback to 1.0, metadata."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

import pytest

from agent.remote import MetadataConfig, RemoteWrite, WALOptions
from agent.remote.codec_v2 import V2, SeriesV2, encode_v2
from agent.storage import STALE_NAN, Metadata, SampleBatch
from tests.procs import eventually, prometheus, query
from tests.protobuf.prompb import RequestV2, decode_v2
from tests.remote.helpers import batch, endpoint, now_ms, series
from tests.remote.receiver import Receiver


def test_encode_v2_decodes_with_the_protobuf_library():
    a = SeriesV2(("__name__", "up", "job", "node"), (2, "1 if up", ""))
    b = SeriesV2(("__name__", "http_requests_total", "job", "node", "code", "200"), (1, "Requests.", "requests"))
    c = SeriesV2(("__name__", "x", "é", "ü\n"), None)
    big = SeriesV2(tuple(s for i in range(9000) for s in (f"l{i}", f"v{i}")), None)  # indexes > 16383
    body = encode_v2([a, b, c, big], [1_700_000_000_000, 1_700_000_000_001, -5, 1], [1.0, 2.5, STALE_NAN, 0.0],
                     created=[0, 1_600_000_000_000, 0, 0])
    req = RequestV2()
    req.ParseFromString(body)
    assert req.symbols[0] == ""
    assert len(req.symbols) == len(set(req.symbols))  # each string once
    got = decode_v2(body, compressed=False)
    assert got[0][0] == (("__name__", "up"), ("job", "node"))
    assert got[0][1] == [(1_700_000_000_000, 1.0)]
    assert got[0][2] == {"type": 2, "help": "1 if up", "unit": ""}
    assert got[1][2] == {"type": 1, "help": "Requests.", "unit": "requests"} and got[1][3] == 1_600_000_000_000
    assert got[2][0] == (("__name__", "x"), ("é", "ü\n")) and got[2][1][0][0] == -5 and got[2][2] == {}
    assert got[3][0][8999] == ("l8999", "v8999")


def _meta_batch(n: int, ts: int, v: float) -> SampleBatch:
    b = batch(n, ts, v)
    b.metadata = {"shoal_test": Metadata("counter", "A test counter.", "")}
    return b


def test_v2_queue_sends_symbols_metadata_and_reads_written_headers(tmp_path: Path):
    async def main():
        rx = await Receiver(speaks_v2=True).start()
        ep = endpoint(rx.url, min_shards=2, max_samples_per_send=7)
        ep.protobuf_message = V2
        rw = RemoteWrite(tmp_path / "wal", [ep], {"cluster": "c"}, WALOptions())
        await rw.start()
        t0 = now_ms()
        for b in range(5):
            rw.append(_meta_batch(20, t0 + b * 1000, float(b)))
        assert await rw.flush()
        st = rw.status()["endpoints"][0]
        await rw.stop()
        await rx.stop()
        return rx, st, t0

    rx, st, t0 = asyncio.run(main())
    assert st["protocol"] == V2 and st["samples_sent"] == 100 and not st["samples_dropped"]
    h = rx.requests[0].headers
    assert h["content-type"] == "application/x-protobuf;proto=io.prometheus.write.v2.Request"
    assert h["x-prometheus-remote-write-version"] == "2.0.0" and h["content-encoding"] == "snappy"
    got = defaultdict(list)
    for labels, ts, v in rx.accepted:
        got[labels].append((ts, v))
    for i in range(20):
        lb = tuple(sorted(series(i) + (("cluster", "c"),)))
        assert got[lb] == [(t0 + b * 1000, float(b)) for b in range(5)]
        # shoal_test_total belongs to family shoal_test: its metadata rides with each series
        assert rx.v2_metadata[lb] == {"type": 1, "help": "A test counter.", "unit": ""}


@pytest.mark.parametrize("answer", ["415", "204_without_headers"])
def test_v2_falls_back_to_v1_when_the_receiver_does_not_speak_it(tmp_path: Path, answer: str):
    def respond(req):
        if "io.prometheus.write.v2.Request" in req.headers.get("content-type", "") and answer == "415":
            return 415, {}, b"unsupported media type"
        return 204, {}, b""

    async def main():
        rx = await Receiver(respond).start()
        ep = endpoint(rx.url, max_samples_per_send=10)
        ep.protobuf_message = V2
        rw = RemoteWrite(tmp_path / "wal", [ep], {}, WALOptions())
        await rw.start()
        t0 = now_ms()
        for b in range(3):
            rw.append(batch(10, t0 + b * 1000, float(b)))
        assert await rw.flush()
        st = rw.status()["endpoints"][0]
        await rw.stop()
        await rx.stop()
        return rx, st, t0

    rx, st, t0 = asyncio.run(main())
    assert st["protocol"] == "prometheus.WriteRequest" and "falling back" in st["last_error"]
    assert st["samples_sent"] == 30 and st["samples_failed"] == 0
    versions = [r.headers["x-prometheus-remote-write-version"] for r in rx.requests]
    assert versions[0] == "2.0.0" and set(versions[1:]) == {"0.1.0"}
    assert sorted((ts, v) for lb, ts, v in rx.accepted if lb == series(0)) == [(t0 + b * 1000, float(b))
                                                                             for b in range(3)]


def test_v2_against_real_prometheus_242_falls_back_and_every_sample_arrives(tmp_path: Path):
    """Prometheus 2.42 has no 2.0 receiver: it answers 204 to a 2.0 body and writes nothing."""
    with prometheus(tmp_path / "prom") as prom:
        async def main():
            ep = endpoint(prom.url + "/api/v1/write", min_shards=2)
            ep.protobuf_message = V2
            rw = RemoteWrite(tmp_path / "wal", [ep], {}, WALOptions())
            await rw.start()
            t0 = now_ms() - 60_000
            for b in range(5):
                rw.append(batch(10, t0 + b * 1000, float(b)))
            assert await rw.flush()
            st = rw.status()["endpoints"][0]
            await rw.stop()
            return st, t0

        st, t0 = asyncio.run(main())
        assert st["protocol"] == "prometheus.WriteRequest"
        res = eventually(lambda: query(prom.url, "count_over_time(shoal_test_total[5m])", at=(t0 + 4000) / 1000))
        assert len(res) == 10 and {float(r["value"][1]) for r in res} == {5.0}


def test_v1_metadata_is_sent_every_send_interval(tmp_path: Path):
    async def main():
        rx = await Receiver().start()
        ep = endpoint(rx.url)
        ep.metadata = MetadataConfig(send=True, send_interval=0.1, max_samples_per_send=1)
        rw = RemoteWrite(tmp_path / "wal", [ep], {}, WALOptions())
        await rw.start()
        b = _meta_batch(3, now_ms(), 1.0)
        b.metadata = {**b.metadata, "other": Metadata("gauge", "Another.", "seconds")}
        rw.append(b)
        assert await rw.flush()
        for _ in range(100):
            if len({m[0] for m in rx.metadata}) == 2:
                break
            await asyncio.sleep(0.05)
        await rw.stop()
        await rx.stop()
        return rx

    rx = asyncio.run(main())
    assert ("shoal_test", 1, "A test counter.", "") in rx.metadata
    assert ("other", 2, "Another.", "seconds") in rx.metadata
