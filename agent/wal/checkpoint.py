"""Checkpoints: the series that outlive the segments being deleted.

Truncation deletes segments every endpoint has sent; the series records in
them may still be needed by samples in later segments. A checkpoint
``checkpoint.N`` holds those series as ordinary frames in one segment-format
file, so replay reads the newest checkpoint and then segments ``> N``. It is
built in ``checkpoint.N.tmp`` and renamed into place, so a crash leaves either
the old or the new checkpoint complete, never half of one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from agent.labels import AnyLabels, Labels
from agent.wal import record
from agent.wal import segment as seg
from agent.wal.reader import read_all

SERIES_PER_RECORD = 5000


def write_checkpoint(directory: Path, upto: int, series: Iterable[tuple[int, AnyLabels]]) -> Path:
    final = seg.checkpoint_path(directory, upto)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    fd = os.open(tmp / seg.segment_name(0), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        chunk: list[tuple[int, AnyLabels]] = []
        for item in series:
            chunk.append(item)
            if len(chunk) >= SERIES_PER_RECORD:
                os.write(fd, seg.frame(record.SERIES, bytes(record.compress(record.encode_series(chunk)))))
                chunk = []
        if chunk:
            os.write(fd, seg.frame(record.SERIES, bytes(record.compress(record.encode_series(chunk)))))
        os.fsync(fd)
    finally:
        os.close(fd)
    seg.fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    seg.fsync_dir(directory)
    return final


def read_checkpoint(directory: Path) -> tuple[int, list[tuple[int, Labels]], str]:
    """Series of the newest checkpoint: ``(N, series, status)``; N is -1 without one."""
    cps = seg.list_checkpoints(directory)
    if not cps:
        return -1, [], "eof"
    n = cps[-1]
    path = seg.checkpoint_path(directory, n) / seg.segment_name(0)
    if not path.exists():
        return n, [], "eof"
    r = read_all(path, 0, decode=True, types=frozenset({record.SERIES}))
    out: list[tuple[int, Labels]] = []
    for rec in r.records:
        out.extend(record.decode_series(rec.payload))
    return n, out, r.status


def delete_old(directory: Path, upto: int) -> int:
    """Delete segments ``<= upto`` and checkpoints older than ``checkpoint.upto``; returns bytes freed."""
    freed = 0
    for s in seg.list_segments(directory):
        if s <= upto:
            p = seg.segment_path(directory, s)
            try:
                freed += p.stat().st_size
                p.unlink()
            except FileNotFoundError:
                pass
    for c in seg.list_checkpoints(directory):
        if c < upto:
            shutil.rmtree(seg.checkpoint_path(directory, c), ignore_errors=True)
    for name in os.listdir(directory):
        if name.startswith("checkpoint.") and name.endswith(".tmp"):
            shutil.rmtree(directory / name, ignore_errors=True)
    seg.fsync_dir(directory)
    return freed
