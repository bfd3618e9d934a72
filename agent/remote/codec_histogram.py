"""The ``Histogram`` protobuf message of remote write, encoded by hand from agent.storage.Histogram.

Remote-Write 1.0 (prometheus.Histogram, TimeSeries field 4) and 2.0
(io.prometheus.write.v2.Histogram, TimeSeries field 3) share this message
field for field: a ``count`` oneof (``count_int`` 1 / ``count_float`` 2),
``sum`` 3, ``schema`` 4 (sint32), ``zero_threshold`` 5, a ``zero_count``
oneof (6 / 7), negative spans 8, deltas 9 and counts 10, positive spans 11,
deltas 12 and counts 13, ``reset_hint`` 14, ``timestamp`` 15 and
``custom_values`` 16. An integer histogram sends its buckets as deltas
between neighbours (sint64), a float one as absolute counts (double): the
oneof fields are always written, even when zero, because which one is set is
what tells the receiver the kind.

Histograms are rare next to float samples (one per native histogram series
per scrape), so this is plain code, not a cached fast path.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from agent.remote.codec import varint
from agent.storage import Histogram

_d = struct.Struct("<d").pack


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def _spans(tag: bytes, spans: Iterable[tuple[int, int]]) -> bytes:
    out = bytearray()
    for off, length in spans:
        body = b"\x08" + varint(_zigzag(off)) + b"\x10" + varint(length)
        out += tag + varint(len(body)) + body
    return bytes(out)


def _packed(tag: bytes, data: bytes) -> bytes:
    return tag + varint(len(data)) + data if data else b""


def _deltas(counts: Iterable[float]) -> bytes:
    out = bytearray()
    prev = 0
    for c in counts:
        ic = int(c)
        out += varint(_zigzag(ic - prev))
        prev = ic
    return bytes(out)


def _doubles(values: Iterable[float]) -> bytes:
    return b"".join(_d(v) for v in values)


def encode_histogram(h: Histogram, ts: int) -> bytes:
    """The message body (without its field tag and length)."""
    if h.is_float:
        head = b"\x11" + _d(h.count)
    else:
        head = b"\x08" + varint(int(h.count))
    out = [head, b"\x19", _d(h.sum), b"\x20", varint(_zigzag(h.schema)), b"\x29", _d(h.zero_threshold)]
    if h.is_float:
        out += [b"\x39", _d(h.zero_count)]
    else:
        out += [b"\x30", varint(int(h.zero_count))]
    out.append(_spans(b"\x42", h.negative_spans))
    if h.is_float:
        out.append(_packed(b"\x52", _doubles(h.negative_counts)))
    else:
        out.append(_packed(b"\x4a", _deltas(h.negative_counts)))
    out.append(_spans(b"\x5a", h.positive_spans))
    if h.is_float:
        out.append(_packed(b"\x6a", _doubles(h.positive_counts)))
    else:
        out.append(_packed(b"\x62", _deltas(h.positive_counts)))
    if h.counter_reset_hint:
        out += [b"\x70", varint(h.counter_reset_hint)]
    out += [b"\x78", varint(ts)]
    if h.custom_values:
        out.append(_packed(b"\x82\x01", _doubles(h.custom_values)))
    return b"".join(out)


def histogram_field(tag: bytes, h: Histogram, ts: int) -> bytes:
    """One ``histograms`` field of a TimeSeries: ``tag`` is 0x22 in 1.0, 0x1a in 2.0."""
    body = encode_histogram(h, ts)
    return tag + varint(len(body)) + body
