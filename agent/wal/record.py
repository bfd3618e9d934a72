"""Record payloads: series (ref -> labels) and samples (ref, timestamp, value columns).

Samples are stored as three packed little-endian columns (u64 refs, i64
millisecond timestamps, f64 values) behind a u32 count. Packing and unpacking
a column is one C call (``array.tobytes`` / ``frombytes``), so the cost per
sample of writing and reading the WAL is a few nanoseconds of memcpy plus
snappy; timestamps of one scrape are identical, which snappy folds away.
Stale markers are ordinary samples whose value has the stale-NaN bit pattern;
the value column keeps the bits exactly.

A metadata record lists ``(len:u16 name | len:u16 type | len:u32 help |
len:u16 unit)*`` in UTF-8, one entry per metric family whose metadata is new
or changed; the writer writes a family again only when it changes (and once
per process, so a reader starting anywhere soon learns it).

A series record lists ``ref:u64 | nlabels:u16 | (len:u16 name | len:u32 value)*``
in UTF-8; series records are rare (once per series), so clarity wins there.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterable, Sequence

import cramjam

from agent.labels import Labels

SERIES = 1
SAMPLES = 2
METADATA = 3  # metric family metadata: name, type, help, unit

_COUNT = struct.Struct("<I")
_SERIES_HEAD = struct.Struct("<QH")
_NAME_LEN = struct.Struct("<H")
_VALUE_LEN = struct.Struct("<I")
_LITTLE = sys.byteorder == "little"

compress = cramjam.snappy.compress_raw
decompress = cramjam.snappy.decompress_raw


class RecordError(ValueError):
    """A payload that passed its CRC but does not decode: written by something else, or a bug."""


def encode_series(series: Iterable[tuple[int, Labels]]) -> bytes:
    out = bytearray()
    for ref, labels in series:
        out += _SERIES_HEAD.pack(ref, len(labels))
        for name, value in labels:
            nb = name.encode()
            vb = value.encode()
            out += _NAME_LEN.pack(len(nb))
            out += nb
            out += _VALUE_LEN.pack(len(vb))
            out += vb
    return bytes(out)


def decode_series(payload: bytes | memoryview) -> list[tuple[int, Labels]]:
    out: list[tuple[int, Labels]] = []
    pos = 0
    end = len(payload)
    try:
        while pos < end:
            ref, n = _SERIES_HEAD.unpack_from(payload, pos)
            pos += _SERIES_HEAD.size
            labels = []
            for _ in range(n):
                (ln,) = _NAME_LEN.unpack_from(payload, pos)
                pos += 2
                name = bytes(payload[pos : pos + ln]).decode()
                pos += ln
                (lv,) = _VALUE_LEN.unpack_from(payload, pos)
                pos += 4
                if pos + lv > end:
                    raise RecordError("series record: label value runs past the end")
                value = bytes(payload[pos : pos + lv]).decode()
                pos += lv
                labels.append((name, value))
            out.append((ref, tuple(labels)))
    except (struct.error, UnicodeDecodeError) as exc:
        raise RecordError(f"series record at byte {pos}: {exc}") from exc
    return out


def encode_metadata(items: Iterable[tuple[str, str, str, str]]) -> bytes:
    """``(family, type, help, unit)`` entries."""
    out = bytearray()
    for name, mtype, help_, unit in items:
        for text, head in ((name, _NAME_LEN), (mtype, _NAME_LEN), (help_, _VALUE_LEN), (unit, _NAME_LEN)):
            b = text.encode()
            if len(b) >= 1 << (8 * head.size):
                b = b[: (1 << (8 * head.size)) - 1].decode(errors="ignore").encode()
            out += head.pack(len(b))
            out += b
    return bytes(out)


def decode_metadata(payload: bytes | memoryview) -> list[tuple[str, str, str, str]]:
    out: list[tuple[str, str, str, str]] = []
    pos = 0
    end = len(payload)
    try:
        while pos < end:
            fields = []
            for head in (_NAME_LEN, _NAME_LEN, _VALUE_LEN, _NAME_LEN):
                (ln,) = head.unpack_from(payload, pos)
                pos += head.size
                if pos + ln > end:
                    raise RecordError("metadata record: a field runs past the end")
                fields.append(bytes(payload[pos : pos + ln]).decode())
                pos += ln
            out.append((fields[0], fields[1], fields[2], fields[3]))
    except (struct.error, UnicodeDecodeError) as exc:
        raise RecordError(f"metadata record at byte {pos}: {exc}") from exc
    return out


def encode_samples(refs: Sequence[int], timestamps: Sequence[int], values: Sequence[float]) -> bytes:
    r = refs if isinstance(refs, array) else array("Q", refs)
    t = timestamps if isinstance(timestamps, array) else array("q", timestamps)
    v = values if isinstance(values, array) else array("d", values)
    if not _LITTLE:  # pragma: no cover - the format is little-endian everywhere
        r, t, v = array("Q", r), array("q", t), array("d", v)
        for a in (r, t, v):
            a.byteswap()
    return b"".join((_COUNT.pack(len(v)), r.tobytes(), t.tobytes(), v.tobytes()))


def decode_samples(payload: bytes | memoryview) -> tuple[array, array, array]:
    """Columns ``(refs, timestamps, values)`` as arrays (typecodes Q, q, d)."""
    if len(payload) < 4:
        raise RecordError("samples record shorter than its count")
    (n,) = _COUNT.unpack_from(payload, 0)
    if len(payload) != 4 + 24 * n:
        raise RecordError(f"samples record: {len(payload)} bytes cannot hold {n} samples")
    mv = memoryview(payload)
    refs = array("Q")
    refs.frombytes(mv[4 : 4 + 8 * n])
    ts = array("q")
    ts.frombytes(mv[4 + 8 * n : 4 + 16 * n])
    vals = array("d")
    vals.frombytes(mv[4 + 16 * n :])
    if not _LITTLE:  # pragma: no cover
        for a in (refs, ts, vals):
            a.byteswap()
    return refs, ts, vals


def samples_count(payload: bytes | memoryview) -> int:
    return _COUNT.unpack_from(payload, 0)[0] if len(payload) >= 4 else 0
