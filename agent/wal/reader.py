"""Reading records back: one segment from an offset, or the whole WAL in order.

The same reader serves replay at start (series only), the per-endpoint
followers (everything after a position) and checkpoint accounting. Reads are
``pread`` calls of a chunk at a time, so a follower holds no open buffers
between calls and sees whatever the writer has completed since.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from agent.wal import segment as seg
from agent.wal.record import decompress

CHUNK = 1 << 20
LIST_EVERY = 1.0  # seconds: the longest a cursor goes without listing the directory (Cursor._later)


@dataclass(slots=True)
class Record:
    segment: int
    offset: int  # where the frame starts
    end: int  # where the next frame starts
    type: int
    payload: bytes  # decompressed


@dataclass(slots=True)
class ReadResult:
    records: list[Record]
    end: int  # offset after the last good frame read
    status: str  # "more" | "eof" | "torn" | "corrupt:<reason>"


def read_segment(
    path: Path, offset: int, max_bytes: int = CHUNK, decode: bool = True, types: frozenset[int] | None = None
) -> ReadResult:
    """Read whole frames from ``offset``, about ``max_bytes`` of them.

    ``decode=False`` checks CRCs but skips decompression (replay of sample
    records); ``types`` keeps only those record types. ``status`` says why the
    read stopped: more to read, a clean end, an incomplete frame at the end of
    the file (torn, or still being written), or a bad frame.
    """
    records: list[Record] = []
    with open(path, "rb", buffering=0) as fh:
        fd = fh.fileno()
        size = os.fstat(fd).st_size
        pos = offset
        consumed = 0
        while pos < size and consumed < max_bytes:
            buf = os.pread(fd, min(max(max_bytes - consumed, 64 * 1024), size - pos), pos)
            i = 0
            got: tuple[int, int, int] | str = "short"
            while True:
                got = seg.check_frame(buf, i)
                if isinstance(got, str):
                    break
                rtype, start, stop = got
                if types is None or rtype in types:
                    payload = b""
                    if decode:
                        try:
                            payload = bytes(decompress(buf[start:stop]))
                        except Exception:  # noqa: BLE001 - snappy reports garbage as various errors
                            return ReadResult(records, pos + i, "corrupt:snappy")
                    records.append(Record(0, pos + i, pos + stop, rtype, payload))
                i = stop
            if got != "short":
                return ReadResult(records, pos + i, f"corrupt:{got}")
            if i == 0:
                # The frame at pos does not fit in what we read: the file ends
                # inside it (torn), or it is larger than the chunk.
                if size - pos < seg.HEADER_SIZE:
                    return ReadResult(records, pos, "torn")
                _t, length, _c = seg.HEADER.unpack_from(buf, 0)
                if length > seg.MAX_PAYLOAD:
                    return ReadResult(records, pos, "corrupt:length")
                if pos + seg.HEADER_SIZE + length > size:
                    return ReadResult(records, pos, "torn")
                max_bytes = max(max_bytes, consumed + seg.HEADER_SIZE + length)
                continue
            pos += i
            consumed += i
        return ReadResult(records, pos, "eof" if pos >= size else "more")


def read_all(
    path: Path, offset: int = 0, decode: bool = True, types: frozenset[int] | None = None
) -> ReadResult:
    """Every good frame of a segment from ``offset``; status is eof, torn or corrupt."""
    out: list[Record] = []
    pos = offset
    while True:
        r = read_segment(path, pos, CHUNK * 4, decode, types)
        out.extend(r.records)
        pos = r.end
        if r.status != "more":
            return ReadResult(out, pos, r.status)


@dataclass(slots=True)
class CursorRead:
    records: list[Record]
    skipped_segments: list[int]  # segments that vanished (truncated) under the cursor
    corruption: str | None  # a bad frame found: the rest of that segment was skipped


class Cursor:
    """Follows the WAL from a position, across segments, as it grows.

    A segment is left for the next only once the next exists, so the cursor
    never runs ahead of the writer. A bad frame in a segment that has a
    successor skips the rest of that segment; in the newest segment it is
    reported and the cursor waits there (the owner rotates the writer so new
    data lands beyond it).
    """

    def __init__(self, directory: Path, segment: int, offset: int) -> None:
        self.directory = directory
        self.segment = segment
        self.offset = offset
        self._listed = -LIST_EVERY  # time.monotonic() of the last directory listing
        self._dir = os.fspath(directory)
        self._path: tuple[int, Path] = (-1, directory)  # the current segment's path, built once

    def position(self) -> tuple[int, int]:
        return self.segment, self.offset

    def _later(self) -> list[int]:
        """Segments after the cursor's: the directory listed only when a successor may exist.

        A listing per read was ~2 % of a busy agent's CPU. Kept segments are numbered
        consecutively (the writer opens last + 1, truncation removes the oldest), so when
        ``segment + 1`` does not exist nothing later does; a listing at least every
        LIST_EVERY seconds still finds a successor past a gap that a crash between a
        checkpoint and its truncation could leave.
        """
        now = time.monotonic()
        if now - self._listed < LIST_EVERY and not os.path.exists(
            os.path.join(self._dir, seg.segment_name(self.segment + 1))
        ):
            return []
        self._listed = now
        return [s for s in seg.list_segments(self.directory) if s > self.segment]

    def read(self, max_bytes: int = CHUNK) -> CursorRead:
        skipped: list[int] = []
        corruption: str | None = None
        records: list[Record] = []
        while True:
            index, path = self._path
            if index != self.segment:
                path = seg.segment_path(self.directory, self.segment)
                self._path = (self.segment, path)
            try:
                r = read_segment(path, self.offset, max_bytes)
            except FileNotFoundError:
                self._listed = -LIST_EVERY
                later = self._later()
                if not later:
                    return CursorRead(records, skipped, corruption)
                skipped.append(self.segment)
                self.segment, self.offset = later[0], 0
                continue
            for rec in r.records:
                rec.segment = self.segment
            records.extend(r.records)
            self.offset = r.end
            if r.status == "more":
                return CursorRead(records, skipped, corruption)
            later = self._later()
            if r.status == "eof":
                if not later:
                    return CursorRead(records, skipped, corruption)
                # The writer finished this segment before creating the next; one
                # more read catches anything written between our read and listing.
                r2 = read_all(path, self.offset)
                for rec in r2.records:
                    rec.segment = self.segment
                records.extend(r2.records)
                if r2.status.startswith("corrupt") or r2.status == "torn":
                    corruption = f"segment {self.segment} offset {r2.end}: {r2.status}"
                self.segment, self.offset = later[0], 0
                if records:
                    return CursorRead(records, skipped, corruption)
                continue
            # torn or corrupt
            if later:
                corruption = f"segment {self.segment} offset {r.end}: {r.status}"
                self.segment, self.offset = later[0], 0
                if records:
                    return CursorRead(records, skipped, corruption)
                continue
            if r.status.startswith("corrupt"):
                corruption = f"segment {self.segment} offset {r.end}: {r.status}"
            return CursorRead(records, skipped, corruption)
