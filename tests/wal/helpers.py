from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from agent.labels import AnyLabels, Labels, as_labels
from agent.wal import record
from agent.wal.reader import read_all
from agent.wal.segment import list_segments, segment_path


def series(i: int, job: str = "j") -> Labels:
    return (("__name__", f"metric_{i % 7}"), ("i", str(i)), ("job", job))


def read_samples(directory: Path, labels_by_ref: Mapping[int, AnyLabels]) -> list[tuple[Labels, int, float]]:
    """Every sample in the WAL, in order, resolved to labels (the WAL's table holds them encoded)."""
    out = []
    decoded: dict[int, Labels] = {}  # each series decoded once: a crash test reads millions of samples

    def labels(ref: int) -> Labels:
        got = decoded.get(ref)
        if got is None:
            got = decoded[ref] = as_labels(labels_by_ref[ref])
        return got

    for s in list_segments(directory):
        r = read_all(segment_path(directory, s))
        for rec in r.records:
            if rec.type == record.SAMPLES:
                refs, ts, vals = record.decode_samples(rec.payload)
                out.extend(zip(map(labels, refs), ts, vals, strict=True))
    return out
