"""A native histogram sample as the WAL keeps it: the remote-write ``Histogram`` protobuf message.

Remote-Write 1.0 (prometheus.Histogram) and 2.0 (io.prometheus.write.v2.Histogram)
share this message field for field: a ``count`` oneof (``count_int`` 1 /
``count_float`` 2), ``sum`` 3, ``schema`` 4 (sint32), ``zero_threshold`` 5, a
``zero_count`` oneof (6 / 7), negative spans 8, deltas 9 and counts 10,
positive spans 11, deltas 12 and counts 13, ``reset_hint`` 14, ``timestamp``
15 and ``custom_values`` 16. An integer histogram sends its buckets as deltas
between neighbours (sint64), a float one as absolute counts (double); the
oneof fields are always written, even when zero, because which one is set is
what tells a receiver the kind.

The WAL stores this body, without the timestamp, once, when the sample is
appended: senders then wrap the stored bytes with the series' labels and the
timestamp field (protobuf readers take fields in any order), so a histogram
costs a queue a few byte-string joins instead of a decode and a re-encode.
It is also compact: the deltas are varints, most of them one byte.
"""

from __future__ import annotations

import struct

from agent.protowire import (
    SMALL,
    DecodeError,
    int64,
    pack_double,
    read_varint,
    unpack_double,
    unzigzag,
    varint,
    zigzag,
)
from agent.storage import Histogram

__all__ = ["DecodeError", "decode", "encode"]


def _spans(tag: bytes, spans: tuple[tuple[int, int], ...]) -> bytes:
    out = []
    for off, length in spans:
        body = b"\x08" + varint(zigzag(off)) + b"\x10" + varint(length)
        out.append(tag + SMALL[len(body)] + body)
    return b"".join(out)


def _deltas(counts: tuple[float, ...]) -> bytes:
    small = SMALL
    out = []
    prev = 0
    for c in counts:
        ic = int(c)
        z = ((ic - prev) << 1) ^ ((ic - prev) >> 63)  # zigzag, inlined in the per-bucket loop
        out.append(small[z] if z < 16384 else varint(z))
        prev = ic
    return b"".join(out)


def _packed(tag: bytes, data: bytes) -> bytes:
    return tag + varint(len(data)) + data if data else b""


def encode(h: Histogram) -> bytes:
    """The message body without the timestamp (field 15) and without a field tag or length."""
    fl = h.is_float
    parts = [
        b"\x11" + pack_double(h.count) if fl else b"\x08" + varint(int(h.count)),
        b"\x19" + pack_double(h.sum),
        b"\x20" + varint(zigzag(h.schema)),
        b"\x29" + pack_double(h.zero_threshold),
        b"\x39" + pack_double(h.zero_count) if fl else b"\x30" + varint(int(h.zero_count)),
    ]
    if h.negative_spans:
        parts.append(_spans(b"\x42", h.negative_spans))
        n = h.negative_counts
        parts.append(_packed(b"\x52", struct.pack(f"<{len(n)}d", *n)) if fl else _packed(b"\x4a", _deltas(n)))
    if h.positive_spans:
        parts.append(_spans(b"\x5a", h.positive_spans))
        p = h.positive_counts
        parts.append(_packed(b"\x6a", struct.pack(f"<{len(p)}d", *p)) if fl else _packed(b"\x62", _deltas(p)))
    if h.counter_reset_hint:
        parts.append(b"\x70" + varint(h.counter_reset_hint))
    if h.custom_values:
        c = h.custom_values
        parts.append(_packed(b"\x82\x01", struct.pack(f"<{len(c)}d", *c)))
    return b"".join(parts)


def decode(body: bytes | memoryview) -> tuple[Histogram, int]:
    """A stored body (or a full message) back to ``(Histogram, timestamp)`` (0 when absent)."""
    f: dict[int, object] = {}
    spans: dict[int, list[tuple[int, int]]] = {8: [], 11: []}
    ints: dict[int, list[int]] = {9: [], 12: []}
    dbl: dict[int, list[float]] = {10: [], 13: [], 16: []}
    pos, end = 0, len(body)
    try:
        while pos < end:
            key, pos = read_varint(body, pos)
            num, wt = key >> 3, key & 7
            if wt == 0:
                v, pos = read_varint(body, pos)
                f[num] = v
            elif wt == 1:
                f[num] = unpack_double(body, pos)[0]
                pos += 8
            elif wt == 2:
                ln, pos = read_varint(body, pos)
                chunk = body[pos : pos + ln]
                if len(chunk) != ln:
                    raise DecodeError("field runs past the end")
                pos += ln
                if num in spans:
                    o = length = 0
                    i = 0
                    while i < ln:
                        k, i = read_varint(chunk, i)
                        v, i = read_varint(chunk, i)
                        if k >> 3 == 1:
                            o = unzigzag(v)
                        elif k >> 3 == 2:
                            length = v
                    spans[num].append((o, length))
                elif num in ints:
                    i = 0
                    while i < ln:
                        v, i = read_varint(chunk, i)
                        ints[num].append(unzigzag(v))
                elif num in dbl:
                    if ln % 8:
                        raise DecodeError(f"packed doubles of field {num}: {ln} bytes")
                    dbl[num].extend(struct.unpack(f"<{ln // 8}d", chunk))
                else:
                    raise DecodeError(f"unexpected field {num}")
            else:
                raise DecodeError(f"unexpected wire type {wt}")
    except struct.error as exc:
        raise DecodeError(str(exc)) from None
    is_float = 2 in f
    if is_float:
        pos_c, neg_c = tuple(dbl[13]), tuple(dbl[10])
    else:
        def absolute(deltas: list[int]) -> tuple[float, ...]:
            out, cur = [], 0
            for d in deltas:
                cur += d
                out.append(float(cur))
            return tuple(out)

        pos_c, neg_c = absolute(ints[12]), absolute(ints[9])
    ts = f.get(15, 0)
    assert isinstance(ts, int)
    ts = int64(ts)
    h = Histogram(
        count=float(f.get(2 if is_float else 1, 0)),  # type: ignore[arg-type]
        sum=float(f.get(3, 0.0)),  # type: ignore[arg-type]
        schema=unzigzag(int(f.get(4, 0))),  # type: ignore[call-overload]
        zero_threshold=float(f.get(5, 0.0)),  # type: ignore[arg-type]
        zero_count=float(f.get(7 if is_float else 6, 0)),  # type: ignore[arg-type]
        positive_spans=tuple(spans[11]),
        positive_counts=pos_c,
        negative_spans=tuple(spans[8]),
        negative_counts=neg_c,
        counter_reset_hint=int(f.get(14, 0)),  # type: ignore[call-overload]
        is_float=is_float,
        custom_values=tuple(dbl[16]),
    )
    return h, ts
