"""Remote-Write 1.0 encoding by hand: requests joined from cached bytes, no message objects.

A WriteRequest is a run of ``timeseries`` fields (tag 1), each holding
``labels`` (tag 1) and ``samples`` (tag 2). The label part of a series never
changes, so it is encoded once per series and kept; a sample then costs three
byte-string appends: a cached prefix (TimeSeries header + labels + Sample
header), the 8 value bytes, and the timestamp field cached per distinct
timestamp (one scrape's samples share one). The prefix assumes a 6-byte
timestamp varint, true for every millisecond timestamp from 1971 to 2109;
anything else takes ``encode_timeseries``, the general path.

One sample per TimeSeries, as Prometheus sends: grouping by series would cost
a dictionary per request and save little, since a batch rarely holds two
samples of one series.
"""

from __future__ import annotations

import cramjam

from agent.labels import Labels
from agent.labels import encode_fields as encode_labels  # re-exported: the codecs' name
from agent.protowire import pack_double, varint

_TS_MIN = 1 << 35
_TS_MAX = 1 << 42


def sample_prefix(label_bytes: bytes) -> bytes:
    """Everything of a one-sample TimeSeries field up to the value bytes (6-byte timestamp form)."""
    return b"\x0a" + varint(len(label_bytes) + 18) + label_bytes + b"\x12\x10\x09"


def ts_field(ts: int) -> bytes | None:
    """``0x10 + varint(ts)`` when it is the 6-byte form ``sample_prefix`` assumes, else None."""
    if _TS_MIN <= ts < _TS_MAX:
        return b"\x10" + varint(ts)
    return None


def encode_timeseries(label_bytes: bytes, ts: int, value: float) -> bytes:
    """The general path: one TimeSeries field with one sample, any timestamp."""
    sample = b"\x09" + pack_double(value) + b"\x10" + varint(ts)
    body = label_bytes + b"\x12" + varint(len(sample)) + sample
    return b"\x0a" + varint(len(body)) + body


def compress(body: bytes | bytearray) -> bytes:
    return bytes(cramjam.snappy.compress_raw(body))


def histogram_field(tag: bytes, body: bytes, ts: int) -> bytes:
    """A TimeSeries' ``histograms`` field (``tag`` 0x22 in 1.0, 0x1a in 2.0) from a stored message body.

    The WAL keeps each histogram as its message body without the timestamp
    (agent/wal/histogram.py); the timestamp field is appended here.
    """
    tf = b"\x78" + varint(ts)
    return tag + varint(len(body) + len(tf)) + body + tf


def encode_histogram_timeseries(label_bytes: bytes, ts: int, body: bytes) -> bytes:
    """One TimeSeries field holding one native histogram sample (field 4), from its stored body."""
    rest = label_bytes + histogram_field(b"\x22", body, ts)
    return b"\x0a" + varint(len(rest)) + rest


def encode_exemplar_timeseries(label_bytes: bytes, ts: int, value: float, exemplar_labels: Labels) -> bytes:
    """One TimeSeries field holding one exemplar (field 3) and no samples, as Prometheus sends them."""
    ex = encode_labels(exemplar_labels) + b"\x11" + pack_double(value) + b"\x18" + varint(ts)
    body = label_bytes + b"\x1a" + varint(len(ex)) + ex
    return b"\x0a" + varint(len(body)) + body
