"""The WAL watcher hands a reader every record in WAL order, decoded, through the WriteTo protocol.

The reader here is a plain recording implementation of ``WriteTo``: the
watcher must work for any reader, not only remote write's queue.
"""

from __future__ import annotations

import asyncio
import os
from array import array
from pathlib import Path
from typing import Any

from agent.storage import Histogram, Metadata
from agent.wal import WAL, record
from agent.wal import segment as seg
from agent.wal.watcher import Watcher
from tests.wal.helpers import series

H = Histogram(count=3.0, sum=1.5, schema=0, zero_threshold=1e-128, zero_count=1.0,
              positive_spans=((0, 2),), positive_counts=(1.0, 1.0))


class Recorder:
    def __init__(self, room: bool = True) -> None:
        self.calls: list[tuple] = []
        self.room = room

    async def ready(self) -> bool:
        self.calls.append(("ready",))
        await asyncio.sleep(0)
        return self.room

    def append_samples(self, seg: int, off: int, refs: array, tss: array, vals: array) -> None:
        self.calls.append(("samples", seg, off, list(refs), list(tss), list(vals)))

    def append_histograms(self, seg: int, off: int, refs: array, tss: array, bodies: list[Any]) -> None:
        self.calls.append(("histograms", seg, off, list(refs), list(tss), len(bodies)))

    def skip_histograms(self, n: int) -> None:
        self.calls.append(("skip_histograms", n))

    def append_exemplars(self, seg: int, off: int, refs: array, tss: array, vals: array, labels: list) -> None:
        self.calls.append(("exemplars", seg, off, list(refs), list(tss), list(vals), list(labels)))

    def update_metadata(self, items: list) -> None:
        self.calls.append(("metadata", items))

    def records_read(self) -> None:
        self.calls.append(("records_read",))

    def wal_error(self, msg: str) -> None:
        self.calls.append(("error", msg))

    def kinds(self) -> list[str]:
        return [c[0] for c in self.calls if c[0] not in ("ready", "records_read")]


def _wal(tmp: Path) -> WAL:
    wal = WAL(tmp / "wal")
    wal.open()
    a, b = series(1), series(2)
    wal.append([a, b], [1000, 1000], [1.0, 2.0], {"m": Metadata("counter", "help me", "")})
    wal.append([], [], [], None, [(b, 2000, H)], [(a, 2500, 0.5, (("trace_id", "t1"),))])
    wal.append([a], [3000], [3.0])
    return wal


def test_records_are_handed_over_decoded_in_wal_order(tmp_path: Path):
    wal = _wal(tmp_path)
    rec = Recorder()
    w = Watcher(wal, wal.segment, 0, rec)
    assert w.read_once() == 6  # the series record is read but not handed over
    ref_a, ref_b = sorted(wal.labels_by_ref)
    assert rec.kinds() == ["metadata", "samples", "histograms", "exemplars", "samples"]
    md, s1, h, ex, s2 = rec.calls
    assert md == ("metadata", [("m", "counter", "help me", "")])
    assert s1[3:] == ([ref_a, ref_b], [1000, 1000], [1.0, 2.0])
    assert h[3:] == ([ref_b], [2000], 1)
    assert ex[3:] == ([ref_a], [2500], [0.5], [(("trace_id", "t1"),)])
    assert s2[3:] == ([ref_a], [3000], [3.0])
    assert all(c[1] == wal.segment for c in (s1, h, ex, s2))
    assert s1[2] < h[2] < ex[2] < s2[2]  # each record's own frame offset: a point to resume from
    assert w.position == wal.head()
    assert w.read_once() == 0  # at the head: nothing more until the writer appends
    wal.append([series(1)], [4000], [4.0])
    assert w.read_once() == 1 and rec.calls[-1][3:] == ([ref_a], [4000], [4.0])
    wal.close()


def test_a_spent_budget_hands_the_rest_of_a_read_over_on_later_calls(tmp_path: Path):
    """A read larger than the loop may be held for is handed over in pieces, none lost or repeated."""
    wal = _wal(tmp_path)
    whole = Recorder()
    Watcher(wal, wal.segment, 0, whole).read_once()
    rec = Recorder()
    w = Watcher(wal, wal.segment, 0, rec)
    handed = []
    positions = []
    while n := w.read_once(budget=0.0):  # a spent budget: one record per call
        handed.append(n)
        positions.append(w.position)
    assert handed == [1] * 5 + [1]  # 6 records, the series record among them
    assert rec.calls == whole.calls
    # Each position in between is where a later record starts: a boundary to resume from.
    offsets = {c[2] for c in rec.calls if c[0] != "metadata"}
    assert offsets <= {p[1] for p in positions}
    assert w.position == wal.head()
    wal.close()


def test_unwanted_kinds_are_not_decoded_and_histograms_are_counted(tmp_path: Path):
    wal = _wal(tmp_path)
    rec = Recorder()
    w = Watcher(wal, wal.segment, 0, rec, histograms=False, exemplars=False)
    w.read_once()
    assert rec.kinds() == ["metadata", "samples", "skip_histograms", "samples"]
    assert ("skip_histograms", 1) in rec.calls
    wal.close()


def test_a_record_that_does_not_decode_is_reported_and_skipped(tmp_path: Path):
    wal = WAL(tmp_path / "wal")
    wal.open()
    wal.append([series(1)], [1000], [1.0])
    # A well-framed samples record whose payload says 5 samples and holds 1 byte.
    wal._write(seg.frame(record.SAMPLES, bytes(record.compress(b"\x05\x00\x00\x00x"))))
    wal.append([series(1)], [2000], [2.0])
    rec = Recorder()
    w = Watcher(wal, wal.segment, 0, rec)
    w.read_once()
    assert rec.kinds() == ["samples", "error", "samples"]
    err = next(c[1] for c in rec.calls if c[0] == "error")
    assert err.startswith(f"WAL record at segment {wal.segment} offset ")
    wal.close()


def test_a_corrupt_active_segment_is_reported_once_and_the_owner_told(tmp_path: Path):
    wal = WAL(tmp_path / "wal")
    wal.open()
    wal.append([series(1)], [1000], [1.0])
    good = wal.head()[1]
    wal.append([series(1)], [2000], [2.0])
    wal.sync()
    path = seg.segment_path(wal.directory, wal.segment)
    with open(path, "r+b") as f:  # flip a byte of the second record's payload: its CRC no longer matches
        f.seek(os.path.getsize(path) - 2)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0xFF]))
    first = wal.segment
    told: list[int] = []
    rec = Recorder()
    w = Watcher(wal, wal.segment, 0, rec, on_corrupt_active=lambda: told.append(wal.rotate()))
    w.read_once()
    w.read_once()
    errors = [c for c in rec.calls if c[0] == "error"]
    assert len(errors) == 1 and "corruption" in errors[0][1]
    assert told == [first + 1] == [wal.segment]
    assert [c[5] for c in rec.calls if c[0] == "samples"] == [[1.0]]  # the good record before the bad one
    assert w.position >= (first, good)  # past the good record, never back before it
    wal.append([series(1)], [3000], [3.0])  # lands in the fresh segment, past the bad frame
    w.read_once()
    assert rec.calls[-1][0] == "samples" and rec.calls[-1][5] == [3.0]
    wal.close()


def test_run_waits_for_room_then_reads_and_says_so_once_per_read(tmp_path: Path):
    wal = _wal(tmp_path)

    async def main() -> Recorder:
        rec = Recorder(room=False)
        w = Watcher(wal, wal.segment, 0, rec)
        task = asyncio.create_task(w.run())
        for _ in range(20):
            await asyncio.sleep(0)
        assert rec.kinds() == []  # no room: nothing read
        rec.room = True
        for _ in range(50):
            await asyncio.sleep(0)
            if "records_read" in [c[0] for c in rec.calls]:
                break
        w.stopping = True
        w.wake()
        await asyncio.wait_for(task, 5)
        return rec

    rec = asyncio.run(main())
    assert rec.kinds() == ["metadata", "samples", "histograms", "exemplars", "samples"]
    assert [c[0] for c in rec.calls].count("records_read") == 1
    wal.close()
