"""Segment files and the frame every record is written in.

A WAL directory holds segment files named by an 8-digit sequence number
(``00000000``, ``00000001``, ...), each at most ``SEGMENT_SIZE`` bytes, and
``checkpoint.NNNNNNNN`` folders. A segment is a plain run of frames:

    type:u8 | length:u32 LE | crc:u32 LE | payload[length]

``payload`` is snappy-compressed; ``crc`` is zlib's CRC-32 over the five
header bytes before it and then the payload, so a flipped length is caught as
surely as a flipped payload byte. Frames are never split across segments:
the writer rotates before a frame would cross the size limit, which keeps
every segment self-contained and lets a reader stop at a bad frame without
losing its footing in the next segment.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from pathlib import Path

SEGMENT_SIZE = 128 * 1024 * 1024
HEADER = struct.Struct("<BII")
HEADER_SIZE = HEADER.size  # 9
_PREFIX = struct.Struct("<BI")
# A frame longer than this is treated as corruption, not as a request to
# allocate gigabytes because a length field took a bit flip.
MAX_PAYLOAD = 64 * 1024 * 1024

_SEGMENT_RE = re.compile(r"^\d{8}$")
_CHECKPOINT_RE = re.compile(r"^checkpoint\.(\d{8})$")


def segment_name(index: int) -> str:
    return f"{index:08d}"


def segment_path(directory: Path, index: int) -> Path:
    return directory / segment_name(index)


def list_segments(directory: Path) -> list[int]:
    """Segment numbers present in ``directory``, ascending."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(int(n) for n in names if _SEGMENT_RE.match(n))


def list_checkpoints(directory: Path) -> list[int]:
    """Completed checkpoints (folders ``checkpoint.N``), ascending by N."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    out = []
    for n in names:
        m = _CHECKPOINT_RE.match(n)
        if m:
            out.append(int(m.group(1)))
    return sorted(out)


def checkpoint_path(directory: Path, index: int) -> Path:
    return directory / f"checkpoint.{index:08d}"


def frame(rtype: int, payload: bytes) -> bytes:
    """One record, ready to be written: header and (already compressed) payload."""
    prefix = _PREFIX.pack(rtype, len(payload))
    crc = zlib.crc32(payload, zlib.crc32(prefix))
    return prefix + struct.pack("<I", crc) + payload


def check_frame(buf: bytes | memoryview, pos: int) -> tuple[int, int, int] | str:
    """Validate the frame at ``buf[pos:]``.

    Returns ``(type, payload_start, payload_end)`` or a reason string:
    ``"short"`` when the buffer ends inside the frame (a torn tail, or simply
    more to read), ``"crc"`` / ``"length"`` / ``"type"`` for corruption.
    """
    end = len(buf)
    if end - pos < HEADER_SIZE:
        return "short"
    rtype, length, crc = HEADER.unpack_from(buf, pos)
    if rtype == 0 or rtype > 16:
        return "type"
    if length > MAX_PAYLOAD:
        return "length"
    start = pos + HEADER_SIZE
    stop = start + length
    if stop > end:
        return "short"
    if zlib.crc32(buf[start:stop], zlib.crc32(buf[pos : pos + 5])) != crc:
        return "crc"
    return rtype, start, stop


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def dir_size(directory: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(directory):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_size
            except FileNotFoundError:
                pass
    return total
