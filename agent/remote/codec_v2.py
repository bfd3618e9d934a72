"""Remote-Write 2.0 (io.prometheus.write.v2.Request) and 1.0 metadata, encoded by hand.

A 2.0 request interns every string (label names and values, help, unit) in a
``symbols`` table that starts with "" and that TimeSeries refer to by index,
so the table belongs to one request: it cannot be cached per series the way
the 1.0 label bytes are. What is cached per series is the flat tuple of its
label strings and its family's metadata; per request each string costs one
dictionary look-up, and small indexes come from a table of ready varints.

Metadata travels per series in 2.0 (type, help_ref, unit_ref) and as a
separate list of ``MetricMetadata`` in 1.0, sent by the queue every
``metadata_config.send_interval``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agent.labels import Labels
from agent.protowire import SMALL, pack_double, varint
from agent.remote.codec import histogram_field

V1 = "prometheus.WriteRequest"
V2 = "io.prometheus.write.v2.Request"
PROTOCOLS = (V1, V2)

# Both enums number the types alike (v2 calls 0 METRIC_TYPE_UNSPECIFIED, v1 UNKNOWN).
METRIC_TYPES = {"counter": 1, "gauge": 2, "histogram": 3, "gaugehistogram": 4, "summary": 5, "info": 6,
                "stateset": 7}
_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created", "_info", "_gcount", "_gsum")

@dataclass(slots=True)
class SeriesV2:
    """What a 2.0 request needs of one series, resolved once: its strings and its metadata."""

    strings: tuple[str, ...]  # name0, value0, name1, value1, ... (sorted by name)
    meta: tuple[int, str, str] | None  # (type, help, unit) of its family, when known


def family_of(name: str, known: dict) -> str | None:  # noqa: ANN001 - any mapping keyed by family
    """The metric family a series name belongs to, among ``known`` families."""
    if name in known:
        return name
    for suf in _SUFFIXES:
        if name.endswith(suf) and name[: -len(suf)] in known:
            return name[: -len(suf)]
    return None


class _Symbols(dict):
    """The request's symbol table: looking up a new string gives it the next index."""

    def __missing__(self, key: str) -> int:
        i = self[key] = len(self)
        return i


def _meta_field(s: SeriesV2, sym: _Symbols) -> bytes:
    if s.meta is None:
        return b""
    mtype, help_, unit = s.meta
    md = b"".join((
        b"\x08" + varint(mtype) if mtype else b"",
        b"\x18" + varint(sym[help_]) if help_ else b"",
        b"\x20" + varint(sym[unit]) if unit else b"",
    ))
    return b"\x2a" + varint(len(md)) + md


def encode_v2(series: Sequence[SeriesV2], timestamps: Sequence[int], values: Sequence[float],
              created: Sequence[int] | None = None,
              histograms: Sequence[tuple[SeriesV2, int, bytes]] | None = None,
              exemplars: Sequence[tuple[SeriesV2, int, float, Labels]] | None = None) -> bytes:
    """One Request: ``series[j]`` has ``values[j]`` at ``timestamps[j]``; uncompressed.

    ``histograms`` (stored message bodies, agent/wal/histogram.py) add one
    TimeSeries per native histogram sample (field 3),
    ``exemplars`` one per exemplar (field 4, no samples), after the float samples.
    """
    sym = _Symbols({"": 0})
    small = SMALL
    pack = pack_double
    tsc: dict[int, bytes] = {}
    out: list[bytes] = []
    ap = out.append
    for j, (s, t, v) in enumerate(zip(series, timestamps, values, strict=True)):
        if len(sym) + len(s.strings) < 16384:
            refs = b"".join([small[sym[x]] for x in s.strings])
        else:
            refs = b"".join([varint(sym[x]) for x in s.strings])
        tsb = tsc.get(t)
        if tsb is None:
            tsb = tsc[t] = b"\x10" + varint(t)
        body = b"".join((b"\x0a", varint(len(refs)), refs, b"\x12", small[10 + len(tsb) - 1], b"\x09", pack(v), tsb))
        if s.meta is not None:
            mtype, help_, unit = s.meta
            md = b"".join((
                b"\x08" + varint(mtype) if mtype else b"",
                b"\x18" + varint(sym[help_]) if help_ else b"",
                b"\x20" + varint(sym[unit]) if unit else b"",
            ))
            body += b"\x2a" + varint(len(md)) + md
        if created is not None and created[j]:
            body += b"\x30" + varint(created[j])
        ap(b"\x2a")
        ap(varint(len(body)))
        ap(body)
    for s, t, h in histograms or ():
        refs = b"".join([varint(sym[x]) for x in s.strings])
        body = b"".join((b"\x0a", varint(len(refs)), refs, histogram_field(b"\x1a", h, t), _meta_field(s, sym)))
        ap(b"\x2a")
        ap(varint(len(body)))
        ap(body)
    for s, t, v, elabels in exemplars or ():
        refs = b"".join([varint(sym[x]) for x in s.strings])
        er = b"".join([varint(sym[x]) for pair in elabels for x in pair])
        ex = b"".join((b"\x0a" + varint(len(er)) + er if er else b"", b"\x11", pack(v), b"\x18", varint(t)))
        body = b"".join((b"\x0a", varint(len(refs)), refs, b"\x22", varint(len(ex)), ex))
        ap(b"\x2a")
        ap(varint(len(body)))
        ap(body)
    head = []
    for text in sym:  # dicts keep insertion order: index order
        b = text.encode()
        head.append(b"\x22")
        head.append(varint(len(b)))
        head.append(b)
    return b"".join(head) + b"".join(out)


def encode_metadata_v1(items: Sequence[tuple[str, str, str, str]]) -> bytes:
    """A 1.0 WriteRequest holding only ``metadata`` (field 3): ``(family, type, help, unit)`` entries."""
    out = bytearray()
    for name, mtype, help_, unit in items:
        md = bytearray()
        t = METRIC_TYPES.get(mtype, 0)
        if t:
            md += b"\x08" + varint(t)
        for tag, text in ((b"\x12", name), (b"\x22", help_), (b"\x2a", unit)):
            if text:
                b = text.encode()
                md += tag + varint(len(b)) + b
        out += b"\x1a" + varint(len(md)) + md
    return bytes(out)
