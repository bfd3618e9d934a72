from __future__ import annotations

import math
import os
import random
import struct
import tracemalloc
from pathlib import Path

import pytest

from agent.labels import as_labels, encode
from agent.storage import STALE_NAN, is_stale_nan
from agent.wal import WAL, Cursor, WALWriteError, reader, record
from agent.wal import segment as seg
from agent.wal.reader import read_all
from tests.wal.helpers import read_samples, series


def _batch(n: int, ts: int, base: float = 0.0):
    labels = [series(i) for i in range(n)]
    return labels, [ts] * n, [base + i for i in range(n)]


def test_round_trip_and_stale_markers_keep_their_bits(tmp_path: Path):
    wal = WAL(tmp_path / "wal")
    wal.open()
    labels, ts, vals = _batch(50, 1000)
    vals[3] = STALE_NAN
    vals[4] = math.inf
    assert wal.append(labels, ts, vals) == 50
    assert wal.append(labels[:10], [2000] * 10, [1.5] * 10) == 10
    got = read_samples(wal.directory, wal.labels_by_ref)
    assert len(got) == 60
    assert [g[0] for g in got[:50]] == labels
    assert is_stale_nan(got[3][2]) and got[4][2] == math.inf
    assert got[50:] == [(labels[i], 2000, 1.5) for i in range(10)]
    # Series labels are written once: one series record for the first batch only.
    recs = read_all(seg.segment_path(wal.directory, wal.segment)).records
    assert [r.type for r in recs] == [record.SERIES, record.SAMPLES, record.SAMPLES]
    wal.close()


def test_replay_restores_series_and_never_reuses_refs(tmp_path: Path):
    d = tmp_path / "wal"
    wal = WAL(d)
    wal.open()
    labels, ts, vals = _batch(20, 1000)
    wal.append(labels, ts, vals)
    before = dict(wal.labels_by_ref)
    wal.close()

    wal2 = WAL(d)
    rep = wal2.open()
    assert rep.series == 20 and rep.corruptions == []
    assert wal2.labels_by_ref == before
    assert wal2.segment == 1  # a fresh segment per open; finished ones stay immutable
    wal2.append(labels[:5] + [series(100)], [2000] * 6, [1.0] * 6)
    # Known series keep their refs; the new one gets a ref above every old one.
    recs = read_all(seg.segment_path(d, 1)).records
    assert [r.type for r in recs] == [record.SERIES, record.SAMPLES]
    (new_ref, new_labels), = record.decode_series(recs[0].payload)
    assert new_labels == series(100) and new_ref > max(before)
    refs, _, _ = record.decode_samples(recs[1].payload)
    assert list(refs[:5]) == [wal2.ref(lb) for lb in labels[:5]]
    got = read_samples(d, wal2.labels_by_ref)
    assert len(got) == 26 and got[20:25] == [(lb, 2000, 1.0) for lb in labels[:5]]
    wal2.close()


def _write_many(d: Path, batches: int) -> list[int]:
    wal = WAL(d)
    wal.open()
    ends = []
    for b in range(batches):
        labels, ts, vals = _batch(30, 1000 + b, base=b * 100)
        wal.append(labels, ts, vals)
        ends.append(wal.head()[1])
    wal.close()
    return ends


@pytest.mark.parametrize("seed", range(12))
def test_torn_tail_is_cut_at_the_last_good_record(tmp_path: Path, seed: int):
    d = tmp_path / "wal"
    ends = _write_many(d, 8)
    path = seg.segment_path(d, 0)
    size = path.stat().st_size
    frame_ends = [r.end for r in read_all(path).records]
    cut = random.Random(seed).randrange(1, size)
    os.truncate(path, cut)
    whole = [e for e in ends if e <= cut]

    wal = WAL(d)
    rep = wal.open()
    assert path.stat().st_size == max([0] + [e for e in frame_ends if e <= cut])
    if cut not in frame_ends:
        assert len(rep.corruptions) == 1 and "torn" in rep.corruptions[0]
    got = read_samples(d, wal.labels_by_ref)
    # Every batch that was whole before the cut is intact, with its values.
    assert len(got) == 30 * len(whole)
    for b in range(len(whole)):
        assert [g[2] for g in got[b * 30 : (b + 1) * 30]] == [b * 100 + i for i in range(30)]
    # And the agent carries on: appends after repair land in a new segment and read back.
    labels, ts, vals = _batch(30, 5000)
    wal.append(labels, ts, vals)
    assert len(read_samples(d, wal.labels_by_ref)) == 30 * len(whole) + 30
    wal.close()


def test_bit_flip_in_the_middle_skips_the_rest_of_that_segment(tmp_path: Path):
    d = tmp_path / "wal"
    ends = _write_many(d, 8)
    path = seg.segment_path(d, 0)
    data = bytearray(path.read_bytes())
    flip_at = ends[3] + 20  # inside the fifth record's payload
    data[flip_at] ^= 0x10
    path.write_bytes(bytes(data))

    wal = WAL(d)
    rep = wal.open()
    assert len(rep.corruptions) == 1 and "crc" in rep.corruptions[0]
    assert path.stat().st_size == ends[3]
    got = read_samples(d, wal.labels_by_ref)
    assert [g[2] for g in got] == [b * 100 + i for b in range(4) for i in range(30)]
    wal.close()


def test_corrupt_length_field_is_not_trusted(tmp_path: Path):
    d = tmp_path / "wal"
    ends = _write_many(d, 3)
    path = seg.segment_path(d, 0)
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, ends[1] + 1, 0x7FFFFFFF)
    path.write_bytes(bytes(data))
    wal = WAL(d)
    rep = wal.open()
    assert rep.corruptions and path.stat().st_size == ends[1]
    assert len(read_samples(d, wal.labels_by_ref)) == 60
    wal.close()


def test_disk_full_drops_the_batch_and_keeps_going(tmp_path: Path):
    d = tmp_path / "wal"
    wal = WAL(d)
    wal.open()
    labels, ts, vals = _batch(10, 1000)
    wal.append(labels, ts, vals)
    # The next segment is /dev/full: the kernel answers ENOSPC to every write.
    os.symlink("/dev/full", seg.segment_path(d, 1))
    wal.rotate()
    with pytest.raises(WALWriteError) as err:
        wal.append([series(500)], [2000], [1.0])
    assert err.value.reason == "disk_full" and err.value.samples == 1
    assert wal.ref(series(500)) is None  # its series record never landed, so the ref is forgotten
    os.unlink(seg.segment_path(d, 1))
    wal.rotate()
    assert wal.append([series(500)], [3000], [2.0]) == 1
    got = read_samples(d, wal.labels_by_ref)
    assert got[-1] == (series(500), 3000, 2.0) and len(got) == 11
    wal.close()


def test_rotation_and_cursor_follow_across_segments(tmp_path: Path):
    d = tmp_path / "wal"
    wal = WAL(d, segment_size=1024)
    wal.open()
    cur = Cursor(d, *wal.head())
    seen = []
    for b in range(40):
        labels, ts, vals = _batch(30, 1000 + b, base=b * 100)
        wal.append(labels, ts, vals)
        if b % 7 == 0:
            for rec in cur.read().records:
                if rec.type == record.SAMPLES:
                    seen.extend(record.decode_samples(rec.payload)[2])
    while True:
        r = cur.read()
        if not r.records:
            break
        for rec in r.records:
            if rec.type == record.SAMPLES:
                seen.extend(record.decode_samples(rec.payload)[2])
    assert len(wal.segments()) > 3
    assert seen == [b * 100 + i for b in range(40) for i in range(30)]
    assert cur.position() == wal.head()
    wal.close()


def test_checkpoint_keeps_live_and_recent_series_and_replays(tmp_path: Path):
    d = tmp_path / "wal"
    wal = WAL(d)
    wal.open()
    wal.append([series(1), series(2)], [1000, 1000], [1.0, 2.0])
    wal.rotate()  # segment 1
    wal.new_generation()  # both survive: they were appended to this period
    wal.append([series(1)], [2000], [1.0])  # series 2 goes quiet
    wal.rotate()  # segment 2
    retired = wal.new_generation()  # series 2 retired while segment 2 is active
    assert retired == [2]  # refs are handed out from 1 in order
    wal.append([series(1), series(3)], [3000, 3000], [1.0, 3.0])
    keep, gone = wal.checkpoint_series(1)
    assert gone == [] and {as_labels(lb) for _, lb in keep} == {series(1), series(2), series(3)}
    wal.sync()
    wal.write_checkpoint(1, keep)
    assert wal.segments() == [2] and seg.list_checkpoints(d) == [1]
    keep, gone = wal.checkpoint_series(2)  # series 2 died in segment 2: forgotten once 2 goes
    assert len(gone) == 1 and series(2) not in {as_labels(lb) for _, lb in keep}
    wal.close()

    wal2 = WAL(d)
    rep = wal2.open()
    assert rep.corruptions == []
    assert set(map(as_labels, wal2.labels_by_ref.values())) == {series(1), series(2), series(3)}
    got = read_samples(d, wal2.labels_by_ref)
    assert got == [(series(1), 3000, 1.0), (series(3), 3000, 3.0)]
    wal2.close()


def test_a_scrapes_repeated_series_list_keeps_its_refs_across_changes_and_generations(tmp_path: Path):
    """Batches of a scrape reuse the last one's refs; any change to the list is looked up again."""
    d = tmp_path / "wal"
    wal = WAL(d)
    wal.open()
    labels = [series(i) for i in range(100)]
    wal.append(list(labels), [1000] * 100, [1.0] * 100)
    refs0 = {lb: wal.ref(lb) for lb in labels}
    wal.append(list(labels), [2000] * 100, [2.0] * 100)  # same tuples, fresh list
    # Equal but distinct tuples and the same first tuple with a series swapped in the middle.
    copies = [tuple(lb) for lb in labels]
    wal.append(copies, [3000] * 100, [3.0] * 100)
    swapped = list(labels)
    swapped[50] = series(500)
    wal.append(swapped, [4000] * 100, [4.0] * 100)
    wal.append(list(labels), [5000] * 100, [5.0] * 100)
    # A generation change retires nothing appended to since; the next batch revives refs.
    wal.rotate()
    assert wal.new_generation() == []
    wal.append(list(labels), [6000] * 100, [6.0] * 100)
    wal.rotate()
    retired = wal.new_generation()
    assert [as_labels(wal.labels_by_ref[r]) for r in retired] == [series(500)]
    got = read_samples(d, wal.labels_by_ref)
    want = []
    for ts, batch in ((1000, labels), (2000, labels), (3000, labels), (4000, swapped),
                      (5000, labels), (6000, labels)):
        want += [(lb, ts, ts / 1000) for lb in batch]
    assert got == want
    assert all(wal.ref(lb) == refs0[lb] for lb in labels)  # one ref per series throughout
    wal.close()


def test_cursor_follows_new_segments_and_gaps_without_listing_every_read(tmp_path: Path) -> None:
    d = tmp_path / "wal"
    d.mkdir()

    def put(index: int, payload: bytes) -> None:
        with open(seg.segment_path(d, index), "ab") as f:
            f.write(seg.frame(record.METADATA, record.compress(payload)))

    put(0, b"a")
    put(2, b"c")  # a gap: the first read of a cursor always lists the directory
    cur = Cursor(d, 0, 0)
    assert [(r.segment, r.payload) for r in cur.read().records] == [(0, b"a")]
    assert [(r.segment, r.payload) for r in cur.read().records] == [(2, b"c")]
    assert cur.read().records == []
    put(3, b"d")  # the next number: found by looking for it alone
    assert [(r.segment, r.payload) for r in cur.read().records] == [(3, b"d")]
    put(5, b"f")  # past a gap: found at the next listing, at most LIST_EVERY later
    cur._listed -= reader.LIST_EVERY
    assert [(r.segment, r.payload) for r in cur.read().records] == [(5, b"f")]
    os.remove(seg.segment_path(d, 5))  # removed under the cursor, nothing after it
    assert cur.read().records == []
    assert cur.position()[0] == 5


def test_series_appended_again_after_a_truncation_leave_no_empty_table_behind(tmp_path: Path):
    """Reviving a series pops it from the previous generation's dict, which never shrinks by
    itself: without a rebuild, a truncation left that dict's full table (52 B a series) held
    empty until the next one. Refs are kept throughout; a series not revived still retires."""
    n = 50_000
    wal = WAL(tmp_path / "wal")
    wal.open()
    labels = [encode(series(i)) for i in range(n + 1)]  # encoded, as a scrape cache hands them on
    tracemalloc.start()
    try:
        wal.append(labels, [1000] * (n + 1), [1.0] * (n + 1))
        refs = [wal.ref(lb) for lb in labels]
        before = tracemalloc.get_traced_memory()[0]
        wal.new_generation()
        for k in range(0, n, 1000):  # the last series is not appended again
            wal.append(labels[k:k + 1000], [2000] * 1000, [2.0] * 1000)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # A generation's table is ~2.6 MiB at 50,000 series: the old one is freed, not kept empty.
    assert held < 1.5 * 2**20, held
    assert [wal.ref(lb) for lb in labels] == refs
    assert wal.new_generation() == [refs[-1]]
    wal.close()
