"""The family-level rules of the OpenMetrics 1.0 specification, checked strictly.

Prometheus' scraper does not apply these (it ingests what it can parse), so
the scrape path never calls this; ``parse_strict`` does, for ``shoal check
metrics`` and conformance tests, which want to know whether an exposition is
valid OpenMetrics: metadata placement and repetition, family grouping and name
clashes, per-type sample names, label and value rules (counters, histograms,
summaries, info, stateset), exemplar placement and timestamp ordering.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from agent.scrape.openmetrics import OM_TYPES, parse_openmetrics, split_sample
from agent.scrape.textparse import Exposition, ParseError, _parse_series_slow

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_VAL = r'"(?:[^"\\\n]|\\.)*"'
_LNAME = r'(?:[a-zA-Z_][a-zA-Z0-9_]*|"(?:[^"\\\n]|\\.)*")'
_KEY = re.compile(
    r"(?:"
    + _NAME.pattern
    + r")(?:\{(?:"
    + _LNAME
    + "="
    + _VAL
    + r"(?:,"
    + _LNAME
    + "="
    + _VAL
    + r")*)?\})?"
)
_NUMBER = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|(?i:inf|infinity))|(?i:nan)")
_REAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")

SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "gauge": ("",),
    "unknown": ("",),
}
EXEMPLAR_OK = {("counter", "_total"), ("histogram", "_bucket"), ("gaugehistogram", "_bucket")}


class _Invalid(ValueError):
    pass


@dataclass
class _Family:
    name: str
    type: str = "unknown"
    meta: set[str] = field(default_factory=set)
    unit: str = ""
    samples: bool = False
    group: frozenset | None = None
    done_groups: set[frozenset] = field(default_factory=set)
    hist: dict[str, list] = field(default_factory=dict)

    def claims(self) -> set[str]:
        return {self.name + s for s in SUFFIXES[self.type]} | {self.name}


def parse_strict(body: bytes) -> Exposition:
    """``parse_openmetrics`` (what a scrape accepts) plus the specification's rules; raises ParseError."""
    exp = parse_openmetrics(body)
    validate(body)
    return exp


def validate(body: bytes) -> None:
    """Raise ParseError (line, reason) unless ``body`` is valid OpenMetrics 1.0 text."""
    v = _Validator()
    lines = body.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for no, raw in enumerate(lines, 1):
        try:
            v.line(raw)
        except _Invalid as exc:
            raise ParseError(no, str(exc)) from None
        except ValueError as exc:
            raise ParseError(no, str(exc)) from None
    try:
        v.finish()
    except ValueError as exc:
        raise ParseError(len(lines), str(exc)) from None


class _Validator:
    def __init__(self) -> None:
        self.cur: _Family | None = None
        self.claimed: set[str] = set()
        self.eof = False
        self.series: dict[tuple, tuple[bool, float]] = {}

    # ---------------------------------------------------------------- lines

    def line(self, raw: bytes) -> None:
        if self.eof:
            raise _Invalid("unexpected data after # EOF")
        try:
            line = raw.decode()
        except UnicodeDecodeError:
            raise _Invalid("invalid UTF-8") from None
        if line == "# EOF":
            self.eof = True
            return
        if line.startswith("#"):
            self.metadata(line)
        else:
            self.sample(raw, line)

    def metadata(self, line: str) -> None:
        m = re.fullmatch(r"# (HELP|TYPE|UNIT) (" + _NAME.pattern + r")(?: (.*))?", line, re.S)
        if m is None:
            raise _Invalid(f"invalid metadata line {line[:40]!r}")
        kind, name, text = m.group(1), m.group(2), m.group(3)
        if kind == "TYPE" and (text is None or text not in OM_TYPES):
            raise _Invalid(f"invalid metric type {text!r}")
        fam = self.cur
        if fam is None or fam.name != name:
            fam = self.start(name)
        elif fam.samples:
            raise _Invalid(f"metadata for {name!r} after its samples")
        if kind in fam.meta:
            raise _Invalid(f"repeated {kind} for {name!r}")
        fam.meta.add(kind)
        if kind == "TYPE":
            fam.type = text or "unknown"
        elif kind == "UNIT":
            fam.unit = text or ""
        if fam.unit and not name.endswith("_" + fam.unit):
            raise _Invalid(f"metric name {name!r} does not end with its unit {fam.unit!r}")
        if fam.unit and fam.type in ("info", "stateset"):
            raise _Invalid(f"{fam.type} metrics cannot have a unit")

    def start(self, name: str) -> _Family:
        self.seal()
        if name in self.claimed:
            raise _Invalid(f"metric family {name!r} repeated or interleaved")
        self.cur = _Family(name)
        return self.cur

    def seal(self) -> None:
        fam = self.cur
        if fam is None:
            return
        self.close_group(fam)
        claims = fam.claims()
        if claims & self.claimed:
            raise _Invalid(f"metric family {fam.name!r} clashes with an earlier family")
        self.claimed |= claims
        self.cur = None

    def finish(self) -> None:
        if not self.eof:
            raise _Invalid("data does not end with # EOF")
        self.seal()

    # ---------------------------------------------------------------- samples

    def sample(self, raw: bytes, line: str) -> None:
        key, rest, ex = split_sample(raw)
        skey = key.decode()
        if _KEY.fullmatch(skey) is None:
            raise _Invalid(f"invalid series {skey[:60]!r}")
        if not rest or len(rest) > 2 or any(not t for t in rest):
            raise _Invalid("expected 'value [timestamp]' separated by single spaces")
        if _NUMBER.fullmatch(rest[0].decode()) is None:
            raise _Invalid(f"invalid value {rest[0]!r}")
        value = float(rest[0])
        ts = None
        if len(rest) == 2:
            if _REAL.fullmatch(rest[1].decode()) is None:
                raise _Invalid(f"invalid timestamp {rest[1]!r}")
            ts = float(rest[1])
        name, pairs = _parse_series_slow(key, False)
        labels = dict(pairs)
        if len(labels) != len(pairs):
            raise _Invalid("duplicate label names")
        fam, suffix = self.family_of(name)
        fam.samples = True
        if ex is not None:
            if (fam.type, suffix) not in EXEMPLAR_OK:
                raise _Invalid(f"exemplar not allowed on {name!r} ({fam.type})")
            ex_s = ex.decode()
            m = re.fullmatch(r"(\{[^}]*\}) (\S+)(?: (\S+))?", ex_s)
            if m is None or _NUMBER.fullmatch(m.group(2)) is None:
                raise _Invalid("invalid exemplar")
            if m.group(3) is not None and _REAL.fullmatch(m.group(3)) is None:
                raise _Invalid("invalid exemplar timestamp")
            if _KEY.fullmatch("x" + m.group(1)) is None:
                raise _Invalid("invalid exemplar labels")
        self.check_order(name, labels, ts)
        self.check_type(fam, suffix, labels, value)

    def family_of(self, name: str) -> tuple[_Family, str]:
        fam = self.cur
        if fam is not None:
            for s in SUFFIXES[fam.type]:
                if name == fam.name + s:
                    return fam, s
        fam = self.start(name)
        if fam.type == "unknown":
            return fam, ""
        raise _Invalid(f"unexpected sample {name!r}")

    def check_order(self, name: str, labels: dict[str, str], ts: float | None) -> None:
        k = (name, tuple(sorted(labels.items())))
        prev = self.series.get(k)
        has_ts = ts is not None
        if prev is not None:
            if prev[0] != has_ts:
                raise _Invalid("a series mixes samples with and without timestamps")
            if has_ts and ts < prev[1]:
                raise _Invalid("timestamps of a series must not go backwards")
        self.series[k] = (has_ts, ts if ts is not None else 0.0)

    def check_type(self, fam: _Family, suffix: str, labels: dict[str, str], value: float) -> None:
        t = fam.type
        group = frozenset((k, v) for k, v in labels.items() if k not in ("le", "quantile"))
        if fam.group != group:
            if group in fam.done_groups:
                raise _Invalid("samples of one metric are not grouped together")
            self.close_group(fam)
            fam.group = group
        if t == "counter" and suffix == "_total":
            _non_negative(value, "counter")
        elif t == "info":
            if value != 1:
                raise _Invalid("info metric value must be 1")
        elif t == "stateset":
            if fam.name not in labels:
                raise _Invalid(f"stateset sample needs a {fam.name!r} label")
            if value not in (0, 1):
                raise _Invalid("stateset value must be 0 or 1")
        elif t == "summary":
            if suffix == "":
                q = labels.get("quantile")
                if q is None:
                    raise _Invalid("summary sample without quantile label")
                qv = _float_label(q, "quantile")
                if not 0 <= qv <= 1:
                    raise _Invalid("quantile must be between 0 and 1")
                if value < 0:
                    raise _Invalid("summary quantile value must not be negative")
            elif suffix in ("_count", "_sum"):
                _non_negative(value, "summary " + suffix)
        elif t in ("histogram", "gaugehistogram"):
            h = fam.hist
            if suffix == "_bucket":
                le = labels.get("le")
                if le is None:
                    raise _Invalid("histogram bucket without le label")
                lv = _float_label(le, "le")
                if math.isinf(lv) and le != "+Inf":
                    raise _Invalid(f"le {le!r} must be written +Inf")
                _non_negative(value, "bucket")
                h.setdefault("buckets", []).append((lv, value))
            elif suffix in ("_count", "_gcount"):
                _non_negative(value, "count")
                h["count"] = [value]
            elif suffix in ("_sum", "_gsum"):
                if value != value:
                    raise _Invalid("histogram sum must not be NaN")
                h["sum"] = [value]

    def close_group(self, fam: _Family) -> None:
        h = fam.hist
        if fam.type in ("histogram", "gaugehistogram") and fam.group is not None and h:
            buckets = h.get("buckets", [])
            if not buckets or not math.isinf(buckets[-1][0]):
                raise _Invalid("histogram must have a +Inf bucket")
            for (a, ca), (b, cb) in zip(buckets, buckets[1:], strict=False):
                if b <= a:
                    raise _Invalid("histogram buckets must be in increasing le order")
                if cb < ca:
                    raise _Invalid("histogram bucket counts must not decrease")
            if ("count" in h) != ("sum" in h):
                raise _Invalid("histogram needs both count and sum, or neither")
            if "count" in h and h["count"][0] != buckets[-1][1]:
                raise _Invalid("histogram count must equal the +Inf bucket")
            negative = any(le < 0 for le, _ in buckets)
            if "sum" in h and fam.type == "histogram":
                if negative:
                    raise _Invalid("a histogram with negative buckets must not have a sum")
                _non_negative(h["sum"][0], "histogram sum")
            if "sum" in h and h["sum"][0] < 0 and not negative:
                raise _Invalid("histogram sum cannot be negative without negative buckets")
        fam.hist = {}
        if fam.group is not None:
            fam.done_groups.add(fam.group)


def _non_negative(value: float, what: str) -> None:
    if value != value or value < 0:
        raise _Invalid(f"{what} value must be a non-negative number")


def _float_label(v: str, name: str) -> float:
    if _NUMBER.fullmatch(v) is None:
        raise _Invalid(f"invalid {name} label value {v!r}")
    return float(v)
