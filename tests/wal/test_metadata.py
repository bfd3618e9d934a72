"""Metadata records: written when a family is new or changed, read back exactly."""

from __future__ import annotations

from pathlib import Path

from agent.storage import Metadata
from agent.wal import WAL, record
from agent.wal.reader import read_all
from agent.wal.segment import list_segments, segment_path
from tests.wal.helpers import series


def _metadata_records(d: Path) -> list[list[tuple[str, str, str, str]]]:
    out = []
    for s in list_segments(d):
        for rec in read_all(segment_path(d, s), types=frozenset({record.METADATA})).records:
            out.append(record.decode_metadata(rec.payload))
    return out


def test_metadata_is_written_once_per_change(tmp_path: Path):
    d = tmp_path / "wal"
    w = WAL(d)
    w.open()
    md = {"metric_0": Metadata("counter", "Help with ünïcode\nand a newline.", "bytes")}
    lb = [series(0)]
    w.append(lb, [1000], [1.0], md)
    w.append(lb, [2000], [2.0], md)  # same dict: nothing new
    w.append(lb, [3000], [3.0], {"metric_0": Metadata("counter", "Help with ünïcode\nand a newline.", "bytes")})
    w.append(lb, [4000], [4.0], {"metric_0": Metadata("gauge", "Changed.", "")})
    w.close()
    assert _metadata_records(d) == [
        [("metric_0", "counter", "Help with ünïcode\nand a newline.", "bytes")],
        [("metric_0", "gauge", "Changed.", "")],
    ]
    # A new process writes each family again on first use, so a reader starting late learns it.
    w2 = WAL(d)
    w2.open()
    w2.append(lb, [5000], [5.0], {"metric_0": Metadata("gauge", "Changed.", "")})
    w2.close()
    assert _metadata_records(d)[-1] == [("metric_0", "gauge", "Changed.", "")]


def test_bad_metadata_payload_is_a_record_error():
    import pytest

    good = record.encode_metadata([("a", "counter", "h", "u")])
    assert record.decode_metadata(good) == [("a", "counter", "h", "u")]
    with pytest.raises(record.RecordError):
        record.decode_metadata(good[:-2])
