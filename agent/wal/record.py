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

A histograms record holds native histogram samples as columns, ``count:u32 |
refs:u64[count] | timestamps:i64[count] | lengths:u32[count]``, and then each
sample's remote-write ``Histogram`` message body without its timestamp
(agent/wal/histogram.py): encoded once at append, sent as stored.

An exemplars record holds ``count:u32 | refs:u64[count] | timestamps:i64[count] |
values:f64[count]`` and then each exemplar's labels as ``nlabels:u16 | (len:u16
name | len:u32 value)*``.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterable, Sequence

import cramjam

from agent.labels import AnyLabels, Labels, as_labels
from agent.storage import Histogram
from agent.wal import histogram as hist

SERIES = 1
SAMPLES = 2
METADATA = 3  # metric family metadata: name, type, help, unit
HISTOGRAMS = 4  # native histogram samples
EXEMPLARS = 5

_COUNT = struct.Struct("<I")
_SERIES_HEAD = struct.Struct("<QH")
_NAME_LEN = struct.Struct("<H")
_VALUE_LEN = struct.Struct("<I")
_LITTLE = sys.byteorder == "little"
_LABELS_HEAD = struct.Struct("<H")

compress = cramjam.snappy.compress_raw
decompress = cramjam.snappy.decompress_raw


class RecordError(ValueError):
    """A payload that passed its CRC but does not decode: written by something else, or a bug."""


def encode_series(series: Iterable[tuple[int, AnyLabels]]) -> bytes:
    out = bytearray()
    for ref, lb in series:
        labels = as_labels(lb)
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


# ------------------------------------------------------------------ histograms


def encode_histograms(items: Iterable[tuple[int, int, Histogram]]) -> bytes:
    """``(ref, timestamp_ms, Histogram)`` entries; each stored as its remote-write message body."""
    refs = array("Q")
    tss = array("q")
    lens = array("I")
    bodies = []
    for ref, ts, h in items:
        b = hist.encode(h)
        refs.append(ref)
        tss.append(ts)
        lens.append(len(b))
        bodies.append(b)
    if not _LITTLE:  # pragma: no cover
        for a in (refs, tss, lens):
            a.byteswap()
    return b"".join((_COUNT.pack(len(refs)), refs.tobytes(), tss.tobytes(), lens.tobytes(), *bodies))


def decode_histogram_bodies(payload: bytes | memoryview) -> tuple[array, array, list[bytes]]:
    """Columns ``(refs, timestamps, bodies)``: the bodies as stored, ready to wrap for the wire."""
    if len(payload) < 4:
        raise RecordError("histograms record shorter than its count")
    (n,) = _COUNT.unpack_from(payload, 0)
    head = 4 + 20 * n
    if len(payload) < head:
        raise RecordError(f"histograms record: {len(payload)} bytes cannot hold {n} histograms")
    mv = memoryview(payload)
    refs = array("Q")
    refs.frombytes(mv[4 : 4 + 8 * n])
    ts = array("q")
    ts.frombytes(mv[4 + 8 * n : 4 + 16 * n])
    lens = array("I")
    lens.frombytes(mv[4 + 16 * n : head])
    if not _LITTLE:  # pragma: no cover
        for a in (refs, ts, lens):
            a.byteswap()
    if head + sum(lens) != len(payload):
        raise RecordError(f"histograms record: bodies take {sum(lens)} bytes, {len(payload) - head} are there")
    bodies = []
    pos = head
    raw = bytes(payload)
    for ln in lens:
        bodies.append(raw[pos : pos + ln])
        pos += ln
    return refs, ts, bodies


def decode_histograms(payload: bytes | memoryview) -> list[tuple[int, int, Histogram]]:
    """Every entry as ``(ref, timestamp_ms, Histogram)`` (tools and tests; senders use the bodies)."""
    refs, ts, bodies = decode_histogram_bodies(payload)
    out = []
    for r, t, b in zip(refs, ts, bodies, strict=True):
        try:
            h, _ = hist.decode(b)
        except hist.DecodeError as exc:
            raise RecordError(f"histograms record: {exc}") from exc
        out.append((r, t, h))
    return out


def histograms_count(payload: bytes | memoryview) -> int:
    return _COUNT.unpack_from(payload, 0)[0] if len(payload) >= 4 else 0


# ------------------------------------------------------------------- exemplars


def _put_labels(out: bytearray, labels: Labels) -> None:
    out += _LABELS_HEAD.pack(len(labels))
    for name, value in labels:
        nb = name.encode()
        vb = value.encode()
        out += _NAME_LEN.pack(len(nb))
        out += nb
        out += _VALUE_LEN.pack(len(vb))
        out += vb


def encode_exemplars(
    refs: Sequence[int], timestamps: Sequence[int], values: Sequence[float], labels: Sequence[Labels]
) -> bytes:
    out = bytearray(encode_samples(refs, timestamps, values))
    for lb in labels:
        _put_labels(out, lb)
    return bytes(out)


def decode_exemplars(payload: bytes | memoryview) -> tuple[array, array, array, list[Labels]]:
    """Columns ``(refs, timestamps, values)`` and each exemplar's own labels."""
    if len(payload) < 4:
        raise RecordError("exemplars record shorter than its count")
    (n,) = _COUNT.unpack_from(payload, 0)
    head = 4 + 24 * n
    if len(payload) < head:
        raise RecordError(f"exemplars record: {len(payload)} bytes cannot hold {n} exemplars")
    refs, ts, vals = decode_samples(memoryview(payload)[:head])
    labels: list[Labels] = []
    pos = head
    end = len(payload)
    try:
        for _ in range(n):
            (k,) = _LABELS_HEAD.unpack_from(payload, pos)
            pos += 2
            lb = []
            for _j in range(k):
                (ln,) = _NAME_LEN.unpack_from(payload, pos)
                pos += 2
                name = bytes(payload[pos : pos + ln]).decode()
                pos += ln
                (lv,) = _VALUE_LEN.unpack_from(payload, pos)
                pos += 4
                if pos + lv > end:
                    raise RecordError("exemplars record: label value runs past the end")
                lb.append((name, bytes(payload[pos : pos + lv]).decode()))
                pos += lv
            labels.append(tuple(lb))
    except (struct.error, UnicodeDecodeError) as exc:
        raise RecordError(f"exemplars record at byte {pos}: {exc}") from exc
    if pos != end:
        raise RecordError(f"exemplars record: {end - pos} bytes left over")
    return refs, ts, vals, labels
