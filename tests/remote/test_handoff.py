"""The queue's handoff rule against a real HTTP receiver: a moved series' unsent samples are dropped.

A receiver that refuses (503) holds every sample unsent: one batch in flight
being retried, cut batches waiting in the shard, samples in the open batch,
and, past the queue's capacity, samples not yet read from the WAL. Handoff
markers for one target's series then drop every one of those older than the
cut-off, wherever it waits, counted as ``handed_off``; the marker is never
sent; samples appended after the marker (the target came back) and the other
target's samples all arrive, in order. After a restart the WAL alone says so.
"""

from __future__ import annotations

import asyncio
import math
from array import array
from pathlib import Path

from agent.labels import as_labels
from agent.remote import RemoteWrite, WALOptions
from agent.remote.handoff import Handoffs
from agent.storage import HANDOFF_NAN, Histogram, SampleBatch
from tests.protobuf.prompb import WriteRequest, decompress
from tests.remote.helpers import batch, endpoint, now_ms, series
from tests.remote.receiver import Answer, Receiver, Request

N = 20  # series per target
SCRAPES = 30


class Gate:
    """Answers 503 while closed: nothing is acknowledged, everything waits in the queue."""

    def __init__(self) -> None:
        self.open = False
        self.passed: list[Request] = []  # the requests accepted

    def __call__(self, req: Request) -> Answer:
        if self.open:
            self.passed.append(req)
        return (204, {}, b"") if self.open else (503, {}, b"closed")


def markers(job: str, ts: int) -> SampleBatch:
    b = SampleBatch()
    for i in range(N):
        b.add(series(i, job), ts, HANDOFF_NAN)
    return b


def cfg(url: str):  # noqa: ANN201 - an EndpointConfig
    # Small batches and capacity: batches wait cut in the shard and the rest stays unread in the WAL.
    return endpoint(url, min_shards=1, max_shards=1, max_samples_per_send=25, capacity=100,
                    min_backoff=0.02, max_backoff=0.05)


def received(rx: Receiver, job: str) -> list[tuple[int, float]]:
    return [(ts, v) for labels, ts, v in rx.accepted if ("job", job) in labels]


def test_markers_drop_unsent_samples_wherever_they_wait(tmp_path: Path) -> None:
    t0 = now_ms() - 120_000
    cut = t0 + (SCRAPES - 1) * 1000  # keep each series' newest pre-handoff sample, drop the older ones

    async def main() -> tuple[Receiver, dict]:
        gate = Gate()
        rx = await Receiver(responder=gate).start()
        rw = RemoteWrite(tmp_path / "wal", [cfg(rx.url)], {}, WALOptions())
        await rw.start()
        for k in range(SCRAPES):
            rw.append(batch(N, t0 + k * 1000, float(k), job="a"))
            rw.append(batch(N, t0 + k * 1000, float(k), job="b"))
        await asyncio.sleep(0.5)  # the queue fills: a batch retried, batches cut, the WAL unread
        q = next(iter(rw.queues.values()))
        assert q.pending() >= 100 and gate.open is False
        rw.append(markers("a", cut))
        rw.append(batch(N, t0 + 60_000, 60.0, job="a"))  # the target came back: sent
        gate.open = True
        assert await rw.flush(20)
        st = q.status()
        await rw.stop()
        await rx.stop()
        return rx, st

    rx, st = asyncio.run(main())
    a, b = received(rx, "a"), received(rx, "b")
    assert not any(math.isnan(v) for _, _, v in rx.accepted)  # the marker never leaves
    assert len(b) == N * SCRAPES  # the other target loses nothing
    assert sorted(a) == sorted([(cut, float(SCRAPES - 1))] * N + [(t0 + 60_000, 60.0)] * N)
    assert st["samples_dropped"].get("handed_off") == N * (SCRAPES - 1)
    assert st["samples_failed"] == 0


def test_markers_in_the_wal_are_honoured_after_a_restart(tmp_path: Path) -> None:
    t0 = now_ms() - 120_000

    async def run(gate: Gate, write: bool) -> tuple[Receiver, dict]:
        rx = await Receiver(responder=gate).start()
        rw = RemoteWrite(tmp_path / "wal", [cfg(rx.url)], {}, WALOptions())
        await rw.start()
        if write:
            for k in range(SCRAPES):
                rw.append(batch(N, t0 + k * 1000, float(k), job="a"))
                rw.append(batch(N, t0 + k * 1000, float(k), job="b"))
            await asyncio.sleep(0.3)
            # As after a stall: every unsent sample of "a" is older than the cut-off.
            rw.append(markers("a", t0 + SCRAPES * 1000))
            rw.append(batch(N, t0 + 60_000, 60.0, job="a"))
            await asyncio.sleep(0.2)
        else:
            assert await rw.flush(20)
        st = next(iter(rw.queues.values())).status()
        await rw.stop(0)
        await rx.stop()
        return rx, st

    # The first run sends nothing (the receiver refuses); the second starts from the WAL alone.
    asyncio.run(run(Gate(), True))
    opened = Gate()
    opened.open = True
    rx, st = asyncio.run(run(opened, False))
    assert sorted(received(rx, "a")) == [(t0 + 60_000, 60.0)] * N
    assert len(received(rx, "b")) == N * SCRAPES
    assert not any(math.isnan(v) for _, _, v in rx.accepted)
    assert st["samples_dropped"].get("handed_off") == N * SCRAPES


def test_only_samples_before_the_marker_and_older_than_its_cutoff_are_dropped() -> None:
    """The WAL order decides, not the timestamp alone: a sample written after the marker (the
    target came back, an exposed timestamp older than the cut-off) is sent."""
    h = Handoffs()
    h.note((3, 500), [7, 8], [10_000, 10_000])
    refs = array("Q", [7, 7, 8, 9])
    tss = array("q", [9_000, 10_000, 9_999, 1])
    assert h.drops(3, 100, refs, tss) == [0, 2]  # before the marker: older than the cut-off only
    assert h.drops(3, 500, refs, tss) == []  # the marker's own end and after: kept
    assert h.drops(4, 0, refs, tss) == []
    part = (refs, tss, array("d", [1.0] * 4), range(4), None)
    kept, n = h.filter_parts([part])
    assert n == 2 and list(kept[0][3]) == [1, 3]
    assert h.filter_parts([part], before=(3, 500))[1] == 0  # a batch ending past the marker
    h.note((5, 0), [7], [20_000])  # moved away again later: the later marker wins for ref 7
    assert h.drops(4, 0, refs, tss) == [0, 1]
    h.expire((3, 600))  # every shard acknowledged past the first marker
    assert set(h.table) == {7}
    h.expire((5, 0))
    assert not h


def test_handed_off_series_leave_the_wal_a_truncation_early_and_the_queue_at_once(tmp_path: Path) -> None:
    """A moved target's series are freed by the queue when its markers are read, and the WAL
    forgets them at the second truncation after the handoff instead of the third.

    With an external label, so the endpoint keeps prefixes of its own (one sending the WAL's
    labels unchanged reads the WAL's table and holds nothing per series)."""
    keep_nothing = WALOptions(truncate_frequency=3600, min_keepalive_time=0, max_keepalive_time=3600)
    t0 = now_ms()

    async def main() -> None:
        rx = await Receiver().start()
        rw = RemoteWrite(tmp_path / "wal", [cfg(rx.url)], {"replica": "r"}, keep_nothing)
        await rw.start()
        rw.append(batch(N, t0, 0.0, job="a"))
        rw.append(batch(N, t0, 0.0, job="b"))
        assert await rw.flush()
        q = next(iter(rw.queues.values()))
        moved = {rw.wal.ref(series(i, "a")) for i in range(N)}
        assert moved <= q.series.lbytes.keys() | q.series.prefix.keys()
        rw.append(markers("a", t0 + 1))
        assert await rw.flush()
        assert not moved & (q.series.lbytes.keys() | q.series.prefix.keys() | q.series.v2.keys())
        for k in (1, 2):
            rw.append(batch(N, t0 + k * 1000, float(k), job="b"))  # "b" stays in use
            assert await rw.flush()
            await rw.truncate()
        assert not moved & rw.wal.labels_by_ref.keys()
        assert {series(i, "b") for i in range(N)} <= set(map(as_labels, rw.wal.labels_by_ref.values()))
        await rw.stop()
        await rx.stop()

    asyncio.run(main())


def test_markers_drop_native_histograms_and_exemplars_as_they_drop_floats(tmp_path: Path) -> None:
    """Every kind the queue sends obeys the marker: a moved target's unsent native histograms and
    the exemplars of its dropped samples go too, what follows the marker and the other target's
    items are sent."""
    t0 = now_ms() - 120_000
    lat = {job: (("__name__", "shoal_latency_seconds"), ("job", job)) for job in ("a", "b")}
    hist = Histogram(count=3, sum=1.5, schema=0, positive_spans=((0, 2),), positive_counts=(1, 2))

    def scrape(job: str, k: int) -> SampleBatch:
        b = batch(N, t0 + k * 1000, float(k), job=job)
        b.histograms.append((lat[job], t0 + k * 1000, hist))
        b.exemplars.append((series(0, job), t0 + k * 1000, float(k), (("trace_id", f"{job}{k}"),)))
        return b

    gate = Gate()

    async def main() -> tuple[Receiver, dict]:
        rx = await Receiver(responder=gate).start()
        ep = cfg(rx.url)
        ep.send_native_histograms = True
        rw = RemoteWrite(tmp_path / "wal", [ep], {}, WALOptions())
        await rw.start()
        for k in range(SCRAPES):
            rw.append(scrape("a", k))
            rw.append(scrape("b", k))
        await asyncio.sleep(0.5)  # a batch retried, batches cut, the rest unread in the WAL
        gate_markers = markers("a", t0 + SCRAPES * 1000)  # as after a stall: every unsent item goes
        gate_markers.add(lat["a"], t0 + SCRAPES * 1000, HANDOFF_NAN)
        rw.append(gate_markers)
        rw.append(scrape("a", 60))  # the target came back: sent
        gate.open = True
        assert await rw.flush(20)
        st = next(iter(rw.queues.values())).status()
        await rw.stop()
        await rx.stop()
        return rx, st

    _rx, st = asyncio.run(main())
    got: dict[str, list[tuple[str, int]]] = {"a": [], "b": []}
    for req in gate.passed:
        wr = WriteRequest()
        wr.ParseFromString(decompress(req.body))
        for ts in wr.timeseries:
            job = dict((x.name, x.value) for x in ts.labels)["job"]
            got[job] += [("float", s.timestamp - t0) for s in ts.samples]
            got[job] += [("hist", h.timestamp - t0) for h in ts.histograms]
            got[job] += [("exemplar", e.timestamp - t0) for e in ts.exemplars]
    a = sorted(got["a"])
    assert a == sorted([("float", 60_000)] * N + [("hist", 60_000), ("exemplar", 60_000)])
    b = got["b"]
    assert len(b) == SCRAPES * (N + 2) and sum(k == "hist" for k, _ in b) == SCRAPES
    assert sum(k == "exemplar" for k, _ in b) == SCRAPES
    assert st["samples_dropped"].get("handed_off") == N * SCRAPES
    assert st["histograms_dropped"].get("handed_off") == SCRAPES
    assert st["exemplars_dropped"] == SCRAPES
    assert st["samples_failed"] == 0


def test_a_refused_send_that_markers_overtook_is_sent_again_without_their_samples(tmp_path: Path) -> None:
    """The window a check before the send leaves open: a stall while the request is on the wire,
    the markers the stall called for written after it left, and the backend refusing it (out of
    order) as a whole. It is sent again without the handed-off samples, so the other target's
    samples in the same request are not lost with them."""
    t0 = now_ms() - 60_000

    class Overtaken:
        """Refuses the first request, as Prometheus would, after the markers came meanwhile."""

        def __init__(self) -> None:
            self.rw: RemoteWrite | None = None
            self.passed: list[Request] = []
            self.refused = 0

        def __call__(self, req: Request) -> Answer:
            if not self.refused and self.rw is not None:
                self.refused += 1
                self.rw.append(markers("a", t0 + 10_000))  # the stall's rebalance, while it was out
                return 400, {}, b"out of order sample"
            self.passed.append(req)
            return 204, {}, b""

    backend = Overtaken()

    async def main() -> dict:
        rx = await Receiver(responder=backend).start()
        rw = RemoteWrite(tmp_path / "wal", [endpoint(rx.url, max_shards=1, max_samples_per_send=100)], {},
                         WALOptions())
        backend.rw = rw
        await rw.start()
        rw.append(batch(N, t0, 1.0, job="a"))  # one batch: both targets' samples in one request
        rw.append(batch(N, t0, 2.0, job="b"))
        assert await rw.flush(20)
        st = next(iter(rw.queues.values())).status()
        await rw.stop()
        await rx.stop()
        return st

    st = asyncio.run(main())
    assert backend.refused == 1
    sent: list[str] = []
    for req in backend.passed:
        wr = WriteRequest()
        wr.ParseFromString(decompress(req.body))
        sent += [dict((x.name, x.value) for x in ts.labels)["job"] for ts in wr.timeseries for _ in ts.samples]
    assert sent == ["b"] * N
    assert st["samples_dropped"].get("handed_off") == N
    assert st["samples_failed"] == 0
