"""Label sets, the identity of a series everywhere in the agent.

A label set is a plain tuple of ``(name, value)`` pairs sorted by name, with
``__name__`` among them. A tuple is hashable, cheap to compare, and needs no
class of its own; keeping it sorted makes equal sets equal tuples, so every
stage (scrape cache, relabel cache, WAL series table, remote encoder) can use
it directly as a dictionary key. Stages that see the same series on every
scrape keep the tuple they made the first time and hand on that same object,
so downstream look-ups hash an object whose strings already have cached hashes.

A label set also has an encoded form (``encode``): the bytes a Remote-Write 1.0
TimeSeries with one sample starts with (its header, the label fields, the
sample's header). The scrape cache hands on that form instead of the tuple and
the WAL keys its series by it, so a series whose labels an endpoint sends
unchanged holds one object from scrape to send: the tuple (~110 B) and the
endpoint's own copy of the bytes (~240 B) are both gone. A stage that needs the
pairs decodes on demand (``as_labels``); a ``SampleBatch`` may carry either
form, and the two are the same series.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping

from agent.protowire import field, read_varint, varint

Labels = tuple[tuple[str, str], ...]
# A label set or its encoded form (``encode``): what a SampleBatch carries per sample.
AnyLabels = Labels | bytes

METRIC_NAME = "__name__"
ADDRESS = "__address__"
SCHEME = "__scheme__"
METRICS_PATH = "__metrics_path__"
SCRAPE_INTERVAL = "__scrape_interval__"
SCRAPE_TIMEOUT = "__scrape_timeout__"
PARAM_PREFIX = "__param_"
META_PREFIX = "__meta_"
RESERVED_PREFIX = "__"

EMPTY: Labels = ()


def from_pairs(pairs: Iterable[tuple[str, str]]) -> Labels:
    """Build a label set, dropping empty values as Prometheus does."""
    return tuple(sorted((n, v) for n, v in pairs if v != ""))


def from_dict(d: Mapping[str, str]) -> Labels:
    return from_pairs(d.items())


def to_dict(labels: Labels) -> dict[str, str]:
    return dict(labels)


def get(labels: Labels, name: str, default: str = "") -> str:
    for n, v in labels:
        if n == name:
            return v
    return default


def metric_name(labels: Labels) -> str:
    return get(labels, METRIC_NAME)


def without_reserved(labels: Labels) -> Labels:
    """Drop the ``__``-prefixed labels that only live during relabeling."""
    return tuple(p for p in labels if not p[0].startswith(RESERVED_PREFIX) or p[0] == METRIC_NAME)


def to_string(labels: Labels) -> str:
    """Prometheus' own rendering: ``name{a="1", b="2"}``."""
    name = get(labels, METRIC_NAME)
    rest = ", ".join(f'{n}="{_escape(v)}"' for n, v in labels if n != METRIC_NAME)
    return f"{name}{{{rest}}}"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# The encoded form: ``0x0a varint(len) label-fields 0x12 0x10 0x09`` (see codec.sample_prefix:
# the length assumes the 6-byte timestamp varint). A set without labels is ``EMPTY_LEN`` long.
_TAIL = b"\x12\x10\x09"
EMPTY_LEN = 5


# A name's encoded field (``0x0a len name``): label names are few and repeat in every series,
# so a scrape's first sight of a series encodes only its values (~7 instead of ~12 us a series).
_NAME_FIELDS: dict[str, bytes] = {}
_NAME_FIELDS_MAX = 4096  # past this many distinct names, encode the rest every time


def encode_fields(labels: Iterable[tuple[str, str]]) -> bytes:
    """The ``labels`` fields of a TimeSeries for a sorted label set; empty values are left out."""
    parts: list[bytes] = []
    names = _NAME_FIELDS
    for name, value in labels:
        if value != "":
            nf = names.get(name)
            if nf is None:
                nf = field(b"\x0a", name.encode())
                if len(names) < _NAME_FIELDS_MAX:
                    names[name] = nf
            vb = value.encode()
            vlen = varint(len(vb))
            parts += (b"\x0a", varint(len(nf) + 1 + len(vlen) + len(vb)), nf, b"\x12", vlen, vb)
    return b"".join(parts)


def encode(labels: Labels) -> bytes:
    """The encoded form of a sorted label set (empty values left out, as everywhere)."""
    fields = encode_fields(labels)
    return b"\x0a" + varint(len(fields) + 18) + fields + _TAIL


def fields_of(enc: bytes) -> bytes:
    """The label fields inside an encoded label set (what ``encode_fields`` made)."""
    _, i = read_varint(enc, 1)
    return enc[i:-3]


def decode(enc: bytes) -> Labels:
    """The label set an ``encode`` made; names interned, as the scrape cache's are."""
    _, i = read_varint(enc, 1)
    end = len(enc) - 3
    out = []
    while i < end:
        n, i = read_varint(enc, i + 1)  # one Label message
        nxt = i + n
        ln, i = read_varint(enc, i + 1)  # its name
        name = sys.intern(enc[i:i + ln].decode())
        vn, i = read_varint(enc, i + ln + 1)  # its value
        out.append((name, enc[i:i + vn].decode()))
        i = nxt
    return tuple(out)


def as_labels(labels: AnyLabels) -> Labels:
    """The pairs of a label set in either form."""
    return decode(labels) if type(labels) is bytes else labels  # type: ignore[return-value]


def as_encoded(labels: AnyLabels) -> bytes:
    """The encoded form of a label set in either form (the same object if it is one)."""
    return labels if type(labels) is bytes else encode(labels)  # type: ignore[return-value,arg-type]


def is_empty(enc: bytes) -> bool:
    return len(enc) <= EMPTY_LEN
