"""The Prometheus protobuf exposition format, decoded by hand on the scrape-cache hot path.

The body is a stream of varint-length-prefixed ``io.prometheus.client.MetricFamily``
messages (client_model's metrics.proto). Nothing here builds message objects:
the wire bytes are walked once, and a metric's label fields are used as they
are, as raw bytes, in the scrape-cache key. A series seen before therefore costs
a slice, a concatenation, a dict look-up and an 8-byte float read; labels are
decoded only on a miss. Summaries and histograms keep a per-metric record (the
keys and label sets of their ``_count``/``_sum``/quantile/``_bucket`` series,
valid while the quantiles or bucket bounds stay the same), so a repeated
scrape of a histogram does not rebuild a label set per bucket either.

Conversion follows Prometheus' protobuf parser: counters, gauges and untyped
metrics are one series each; a summary gives ``_count``, ``_sum`` and one series
per quantile; a classic histogram gives ``_count``, ``_sum`` and ``_bucket``
series with ``le`` (the ``+Inf`` bucket added when absent); quantile and ``le``
values are formatted as Prometheus formats them (``1.0``, ``0.25``, ``1e+06``).
A histogram with native buckets (spans, a zero threshold or a zero count)
becomes one native histogram sample when native histograms are enabled, plus
its classic series only when ``classic`` is set; with native histograms
disabled every histogram is read as classic. A timestamp of 0 means none.
Exemplars go to ``st.exemplars`` as Prometheus' protobuf parser yields them: a
counter's, a classic bucket's (on its ``_bucket`` series), and for a native
histogram those of its ``exemplars`` field, else of its buckets, only with a
timestamp. Created timestamps are collected only by the standalone parser (a
scrape ignores them, as Prometheus does by default).

Malformed input (truncated messages, lengths past the end, bad wire types,
invalid UTF-8, unknown metric types) raises ProtoError naming the metric
family and byte offset.
"""

from __future__ import annotations

import math
import struct
from decimal import Decimal

from agent.labels import Labels
from agent.protowire import (
    DecodeError,
    int64,
    pack_double,
    read_varint,
    skip,
    unpack_double,
    unzigzag,
)
from agent.scrape import nativehist
from agent.scrape.textparse import Exposition, Sample, ScanState, build_metadata, labels_of
from agent.storage import Histogram

MEDIA_TYPE = "application/vnd.google.protobuf"

COUNTER, GAUGE, SUMMARY, UNTYPED, HISTOGRAM, GAUGE_HISTOGRAM = range(6)
TYPE_NAMES = ("counter", "gauge", "summary", "unknown", "histogram", "gaugehistogram")
# The Metric field (as a one-byte LEN tag) that holds the value, by family type.
VALUE_TAGS = (0x1A, 0x12, 0x22, 0x2A, 0x3A, 0x3A)
_PREFIX = tuple(bytes((0, t)) for t in range(6))

_INF = math.inf


class ProtoError(ValueError):
    """A malformed protobuf exposition; the message names where."""


# ---------------------------------------------------------------- wire helpers


def _end(i: int, end: int, what: str) -> None:
    if i != end:
        raise ProtoError(f"truncated or malformed {what}")


def _timestamp_ms(buf: bytes, i: int, end: int) -> int:
    """A google.protobuf.Timestamp as milliseconds (Prometheus: seconds*1e3 + nanos/1e6)."""
    secs = nanos = 0
    while i < end:
        t, i = read_varint(buf, i)
        if t == 0x08:
            secs, i = read_varint(buf, i)
        elif t == 0x10:
            nanos, i = read_varint(buf, i)
        else:
            i = skip(buf, i, t & 7)
    _end(i, end, "timestamp")
    nanos = int64(nanos)
    return int64(secs) * 1000 + int(nanos / 1_000_000)


def _label_pairs(buf: bytes, i: int, end: int) -> list[tuple[str, str]]:
    """Decode consecutive LabelPair fields (tag 1) into (name, value) strings."""
    pairs = []
    while i < end:
        t, i = read_varint(buf, i)
        n, i = read_varint(buf, i)
        stop = i + n
        if t != 0x0A or stop > end:
            raise ProtoError("malformed label pair")
        name = value = b""
        while i < stop:
            t, i = read_varint(buf, i)
            if t == 0x0A:
                n, i = read_varint(buf, i)
                name = buf[i : i + n]
                i += n
            elif t == 0x12:
                n, i = read_varint(buf, i)
                value = buf[i : i + n]
                i += n
            else:
                i = skip(buf, i, t & 7)
        _end(i, stop, "label pair")
        try:
            sname, svalue = name.decode(), value.decode()
        except UnicodeDecodeError:
            raise ProtoError(f"invalid UTF-8 in label {name!r}={value!r}") from None
        if not sname:
            raise ProtoError(f"invalid label name: empty (value {svalue!r})")
        pairs.append((sname, svalue))
    return pairs


MAX_EXEMPLAR_RUNES = 128


def _exemplar(buf: bytes, i: int, end: int) -> tuple[Labels, float, int | None] | None:
    """An Exemplar message as (labels, value, timestamp ms or None); None when its labels
    exceed 128 runes, which Prometheus' exemplar storage refuses."""
    pairs: list[tuple[str, str]] = []
    v = 0.0
    ts = None
    while i < end:
        at = i
        t, i = read_varint(buf, i)
        if t == 0x0A:
            n, i = read_varint(buf, i)
            i += n
            pairs += _label_pairs(buf, at, i)
        elif t == 0x11:
            v = unpack_double(buf, i)[0]
            i += 8
        elif t == 0x1A:
            n, i = read_varint(buf, i)
            ts = _timestamp_ms(buf, i, i + n)
            i += n
        else:
            i = skip(buf, i, t & 7)
    _end(i, end, "exemplar")
    if sum(len(a) + len(b) for a, b in pairs) > MAX_EXEMPLAR_RUNES:
        return None
    return tuple(sorted(p for p in pairs if p[1])), v, ts


def _split_metric(buf: bytes, ms: int, me: int, vtag: int) -> tuple[bytes, int, int, int]:
    """(label field bytes, value start, value end, timestamp) of a Metric message, any field order."""
    parts: list[bytes] = []
    vs = ve = -1
    ts = 0
    i = ms
    while i < me:
        t, j = read_varint(buf, i)
        if t == 0x0A or t == vtag:
            n, k = read_varint(buf, j)
            if t == 0x0A:
                parts.append(buf[i : k + n])
            else:
                vs, ve = k, k + n
            i = k + n
        elif t == 0x30:
            ts, i = read_varint(buf, j)
            ts = int64(ts)
        else:
            i = skip(buf, j, t & 7)
    _end(i, me, "metric")
    if ve > me:
        raise ProtoError("truncated metric value")
    return b"".join(parts), vs, ve, ts


# ---------------------------------------------------------------- label formatting


def format_om_float(f: float) -> str:
    """Prometheus' formatOpenMetricsFloat: Go's shortest ``%g`` plus ``.0`` when it looks like an integer."""
    if f == 1:
        return "1.0"
    if f == 0:
        return "0.0"
    if f == -1:
        return "-1.0"
    if f != f:
        return "NaN"
    if f == _INF:
        return "+Inf"
    if f == -_INF:
        return "-Inf"
    sign = "-" if f < 0 else ""
    _, digits_t, exp = Decimal(repr(abs(f))).normalize().as_tuple()
    digits = "".join(map(str, digits_t))
    nd = len(digits)
    dp = nd + int(exp)  # position of the decimal point relative to the digits
    e10 = dp - 1
    if e10 < -4 or e10 >= 6:  # strconv 'g' with shortest precision uses eprec 6
        mant = digits[0] + ("." + digits[1:] if nd > 1 else "")
        s = f"{mant}e{'-' if e10 < 0 else '+'}{abs(e10):02d}"
    elif dp <= 0:
        s = "0." + "0" * (-dp) + digits
    elif dp >= nd:
        s = digits + "0" * (dp - nd)
    else:
        s = digits[:dp] + "." + digits[dp:]
    if "." not in s and "e" not in s:
        s += ".0"
    return sign + s


# ---------------------------------------------------------------- the scan


def scan_protobuf(body: bytes, st: ScanState, pos: int = 0, stop: int | None = None) -> int:
    """Scan the length-delimited MetricFamily messages starting at ``pos`` into ``st``.

    Stops after the first message that ends at or past ``stop`` (the whole body
    when None) and returns where the next one starts, so a caller can yield to
    the event loop between calls. ``st.lineno`` counts families for messages.
    """
    n = len(body)
    if stop is None or stop > n:
        stop = n
    while pos < stop:
        start = pos
        try:
            ln, pos = read_varint(body, pos)
        except (IndexError, DecodeError):
            raise ProtoError(
                f"protobuf: truncated length of metric family {st.lineno + 1} at byte {start}"
            ) from None
        end = pos + ln
        if end > n:
            raise ProtoError(
                f"protobuf: metric family {st.lineno + 1} at byte {start} is {ln} bytes long "
                f"but only {n - pos} remain"
            )
        st.lineno += 1
        try:
            _family(body, pos, end, st)
        except nativehist.HistogramError:
            raise
        except (IndexError, struct.error, ValueError) as exc:
            reason = str(exc) if isinstance(exc, ValueError) else "truncated message"
            raise ProtoError(
                f"protobuf: metric family {st.lineno} at byte {start}: {reason}"
            ) from None
        pos = end
    return pos


def _family(buf: bytes, i: int, end: int, st: ScanState) -> None:
    name_f = b""
    help_b = unit_b = b""
    mtype = 0
    metrics: list[int] = []  # start, end, start, end, ...
    add = metrics.append
    while i < end:
        t = buf[i]
        if t == 0x22:
            n = buf[i + 1]
            if n < 0x80:
                i += 2
            elif buf[i + 2] < 0x80:
                n = (n & 0x7F) | (buf[i + 2] << 7)
                i += 3
            else:
                n, i = read_varint(buf, i + 1)
            add(i)
            i += n
            add(i)
        elif t == 0x0A:
            n, j = read_varint(buf, i + 1)
            name_f = buf[i : j + n]
            i = j + n
        elif t == 0x12:
            n, j = read_varint(buf, i + 1)
            help_b = buf[j : j + n]
            i = j + n
        elif t == 0x18:
            mtype, i = read_varint(buf, i + 1)
        elif t == 0x2A:
            n, j = read_varint(buf, i + 1)
            unit_b = buf[j : j + n]
            i = j + n
        else:
            t, i = read_varint(buf, i)
            i = skip(buf, i, t & 7)
    _end(i, end, "metric family")
    if not metrics:
        return  # Prometheus skips empty families, metadata included
    # The header's checks and metadata entries are remembered across scrapes.
    hkey = (name_f, help_b, mtype, unit_b)
    head = st.comments.get(hkey)
    if head is None:
        head = st.comments[hkey] = _header(name_f, help_b, mtype, unit_b)
    name, prefix, items = head
    st.meta_items += items
    if mtype == SUMMARY:
        _summaries(buf, metrics, prefix, name, st)
    elif mtype >= HISTOGRAM:
        _histograms(buf, metrics, prefix, name, st, mtype == GAUGE_HISTOGRAM)
    else:
        _simple(buf, metrics, prefix, name, st, VALUE_TAGS[mtype], mtype == COUNTER)


def _header(name_f: bytes, help_b: bytes, mtype: int, unit_b: bytes) -> tuple:
    """(name, cache-key prefix, metadata entries) of a family; raises ProtoError if invalid."""
    n, j = read_varint(name_f, 1) if name_f else (0, 0)
    try:
        name = name_f[j:].decode()
        help_s = help_b.decode()
        unit = unit_b.decode()
    except UnicodeDecodeError:
        raise ProtoError(f"invalid UTF-8 in name, help or unit of {name_f[j:]!r}") from None
    if not name:
        raise ProtoError("invalid metric name: empty")
    if mtype > GAUGE_HISTOGRAM:
        raise ProtoError(f"unknown metric type for metric {name!r}: {mtype}")
    if unit:
        _check_unit(name, unit, mtype)
    items = [("HELP", name, help_s)]
    if unit:
        items.append(("UNIT", name, unit))
    items.append(("TYPE", name, TYPE_NAMES[mtype]))
    return name, _PREFIX[mtype] + name_f, items


def _check_unit(name: str, unit: str, mtype: int) -> None:
    base = name[:-6] if mtype == COUNTER and name.endswith("_total") else name
    if not base.endswith("_" + unit):
        kind = "counter" if base is not name else "metric"
        raise ProtoError(f"unit {unit!r} not a suffix of {kind} {name!r}")


def _resolve(st: ScanState, key: bytes, name: str, buf: bytes, s: int, e: int, extra=None) -> Labels:  # noqa: ANN001
    pairs = _label_pairs(buf, s, e)
    if extra is not None:
        pairs.append(extra)
    assert st.resolve_pairs is not None
    return st.resolve_pairs(key, name, pairs)


def _simple(
    buf: bytes, metrics: list[int], prefix: bytes, name: str, st: ScanState, vtag: int, counter: bool
) -> None:
    """Counters, gauges, untyped: one series per metric; the hot path."""
    get = st.cache.get
    keys_append = st.keys.append
    labs = st.labels
    vals = st.values
    labs_append = labs.append
    vals_append = vals.append
    explicit = st.explicit
    created = st.created
    unpack = unpack_double
    hint = 0  # length of the last counter's created timestamp: the shape to try first
    fast = created is None
    for k in range(0, len(metrics), 2):
        ms = metrics[k]
        me = metrics[k + 1]
        if fast and me - ms >= 11:
            # Canonical shape: label fields, then the value field ending the metric, either
            # {value} or {value, created}. Taken only on a cache hit: a hit means these bytes
            # were once read as complete label fields, so the split here is the true one.
            x = me - 11
            if buf[x] != vtag or buf[me - 10] != 9 or buf[me - 9] != 9:
                x = me - hint - 13
                if not (
                    x >= ms
                    and buf[x] == vtag
                    and buf[x + 1] == 11 + hint
                    and buf[x + 2] == 9
                    and buf[me - hint - 2] == 0x1A
                    and buf[me - hint - 1] == hint
                ):
                    x = -1
            if x >= 0:
                key = prefix + buf[ms:x]
                lab = get(key)
                if lab is not None:
                    keys_append(key)
                    if lab:
                        labs_append(lab)
                        vals_append(unpack(buf, x + 3)[0])
                    continue
        j = ms
        while j < me and buf[j] == 0x0A:
            n = buf[j + 1]
            if n < 0x80:
                j += 2 + n
            else:
                n, j = read_varint(buf, j + 1)
                j += n
        lab_end = j
        v = 0.0
        ts = 0
        ct = ex = None
        odd = False
        while j < me:
            t = buf[j]
            if t == vtag:
                n = buf[j + 1]
                # The common shapes, read in place: {value} and {value, created timestamp}.
                if (
                    buf[j + 2] == 0x09
                    and n < 0x80
                    and (n == 9 or (created is None and buf[j + 11] == 0x1A and n == 11 + buf[j + 12]))
                ):
                    v = unpack(buf, j + 3)[0]
                    j += 2 + n
                    continue
                n, s = read_varint(buf, j + 1)
                j = s + n
                v, ct, ex = _value(buf, s, j, v, counter)
            elif t == 0x30:
                ts, j = read_varint(buf, j + 1)
                ts = int64(ts)
            elif t == 0x0A:
                odd = True
                break
            else:
                t, j = read_varint(buf, j)
                j = skip(buf, j, t & 7)
        if odd:
            lab_bytes, s, e, ts = _split_metric(buf, ms, me, vtag)
            v, ct, ex = _value(buf, s, e, 0.0, counter) if s >= 0 else (0.0, None, None)
            key = prefix + lab_bytes
            lb, ls, le_ = lab_bytes, 0, len(lab_bytes)
        else:
            if j != me:
                raise ProtoError("truncated or malformed metric")
            key = prefix + buf[ms:lab_end]
            lb, ls, le_ = buf, ms, lab_end
            if me - lab_end > 13:
                hint = me - lab_end - 13
        lab = get(key)
        if lab is None:
            lab = _resolve(st, key, name, lb, ls, le_)
        keys_append(key)
        if lab:
            if ts:
                explicit.append((len(vals), ts, key))
            labs_append(lab)
            vals_append(v)
            if ct is not None and created is not None:
                created[lab] = ct
            if ex is not None:
                st.exemplars.append((lab, ex[2], ts or None, ex[1], ex[0]))


def _value(
    buf: bytes, i: int, end: int, v: float, counter: bool
) -> tuple[float, int | None, tuple | None]:
    """(value, created ms or None, exemplar or None) of a Counter/Gauge/Untyped message."""
    ct = ex = None
    while i < end:
        t, i = read_varint(buf, i)
        if t == 0x09:
            v = unpack_double(buf, i)[0]
            i += 8
        elif t == 0x1A and counter:
            n, i = read_varint(buf, i)
            ct = _timestamp_ms(buf, i, i + n)
            i += n
        elif t == 0x12 and counter:
            n, i = read_varint(buf, i)
            ex = _exemplar(buf, i, i + n)
            i += n
        else:
            i = skip(buf, i, t & 7)
    _end(i, end, "metric value")
    return v, ct, ex


def _metric_parts(buf: bytes, ms: int, me: int, vtag: int) -> tuple[int, int, int, int]:
    """(labels end, value start, value end, timestamp) for a metric whose labels come first."""
    j = ms
    while j < me and buf[j] == 0x0A:
        n, j = read_varint(buf, j + 1)
        j += n
    lab_end = j
    vs = ve = -1
    ts = 0
    while j < me:
        t, j2 = read_varint(buf, j)
        if t == vtag:
            n, vs = read_varint(buf, j2)
            ve = j = vs + n
        elif t == 0x30:
            ts, j = read_varint(buf, j2)
            ts = int64(ts)
        elif t == 0x0A:
            return -1, 0, 0, 0
        else:
            j = skip(buf, j2, t & 7)
    _end(j, me, "metric")
    return lab_end, vs, ve, ts


def _emit(st: ScanState, rec: tuple, values: list[float], ts: int) -> None:
    """Append a summary's or classic histogram's series (record: shape, keys, labels, all kept)."""
    _, keys, labs, all_kept = rec
    st.keys += keys
    if all_kept and not ts:
        st.labels += labs
        st.values += values
        return
    out_l, out_v, explicit = st.labels, st.values, st.explicit
    for key, lab, v in zip(keys, labs, values, strict=True):
        if lab:
            if ts:
                explicit.append((len(out_v), ts, key))
            out_l.append(lab)
            out_v.append(v)


def _record(
    st: ScanState,
    mkey: bytes,
    shape: tuple,
    series: list[tuple[bytes, str, tuple[str, str] | None]],
    buf: bytes,
    ls: int,
    le_: int,
) -> tuple:
    """Keys and label sets for a metric's derived series, from the cache or resolved."""
    get = st.cache.get
    keys = []
    labs = []
    for suffix_key, sname, extra in series:
        key = mkey + suffix_key
        lab = get(key)
        if lab is None:
            lab = _resolve(st, key, sname, buf, ls, le_, extra)
        keys.append(key)
        labs.append(lab)
    return (shape, keys, labs, all(labs))


def _metric_key(buf: bytes, ms: int, me: int, vtag: int, prefix: bytes) -> tuple:
    """(metric key, label source buffer, start, end, value start, value end, timestamp)."""
    lab_end, vs, ve, ts = _metric_parts(buf, ms, me, vtag)
    if lab_end < 0:
        lab_bytes, vs2, ve2, ts = _split_metric(buf, ms, me, vtag)
        sub = buf[vs2:ve2] if vs2 >= 0 else b""
        return prefix + lab_bytes, lab_bytes, 0, len(lab_bytes), sub, 0, len(sub), ts
    return prefix + buf[ms:lab_end], buf, ms, lab_end, buf, vs, ve, ts


def _summaries(buf: bytes, metrics: list[int], prefix: bytes, name: str, st: ScanState) -> None:
    records = st.records
    seen = st.seen_records
    created = st.created
    for k in range(0, len(metrics), 2):
        mkey, lb, ls, le_, vb, vs, ve, ts = _metric_key(buf, metrics[k], metrics[k + 1], 0x22, prefix)
        count = 0
        total = 0.0
        qs: list[float] = []
        vals: list[float] = []
        ct = None
        i = vs
        while i < ve:
            t, i = read_varint(vb, i)
            if t == 0x08:
                count, i = read_varint(vb, i)
            elif t == 0x11:
                total = unpack_double(vb, i)[0]
                i += 8
            elif t == 0x1A:
                n, i = read_varint(vb, i)
                q = qv = 0.0
                stop = i + n
                while i < stop:
                    t, i = read_varint(vb, i)
                    if t == 0x09:
                        q = unpack_double(vb, i)[0]
                        i += 8
                    elif t == 0x11:
                        qv = unpack_double(vb, i)[0]
                        i += 8
                    else:
                        i = skip(vb, i, t & 7)
                _end(i, stop, "quantile")
                qs.append(q)
                vals.append(qv)
            elif t == 0x22 and created is not None:
                n, i = read_varint(vb, i)
                ct = _timestamp_ms(vb, i, i + n)
                i += n
            else:
                i = skip(vb, i, t & 7)
        _end(i, max(ve, vs), "summary")
        shape = tuple(qs)
        rec = records.get(mkey)
        if rec is None or rec[0] != shape:
            series: list[tuple[bytes, str, tuple[str, str] | None]] = [
                (b"\xffc", name + "_count", None),
                (b"\xffs", name + "_sum", None),
            ]
            for q in qs:
                series.append((b"\xffq" + pack_double(q), name, ("quantile", format_om_float(q))))
            rec = _record(st, mkey, shape, series, lb, ls, le_)
            records[mkey] = rec
        seen[mkey] = rec
        _emit(st, rec, [float(count), total, *vals], ts)
        if ct is not None and created is not None:
            created[labels_of(name, _label_pairs(lb, ls, le_))] = ct


def _spans(buf: bytes, i: int, end: int, out: list[tuple[int, int]]) -> None:
    off = length = 0
    while i < end:
        t, i = read_varint(buf, i)
        if t == 0x08:
            off, i = read_varint(buf, i)
        elif t == 0x10:
            length, i = read_varint(buf, i)
        else:
            i = skip(buf, i, t & 7)
    _end(i, end, "bucket span")
    out.append((unzigzag(off), length & 0xFFFFFFFF))


def _packed(buf: bytes, i: int, wt: int, out: list, zig: bool) -> int:
    """A repeated sint64 (varints) or double field, packed or not; returns the new position."""
    if wt == 2:
        n, i = read_varint(buf, i)
        stop = i + n
        if zig:
            while i < stop:
                v, i = read_varint(buf, i)
                out.append((v >> 1) ^ -(v & 1))
        else:
            if n % 8:
                raise ProtoError("packed doubles not a multiple of 8 bytes")
            out.extend(struct.unpack_from(f"<{n // 8}d", buf, i))
            i = stop
        _end(i, stop, "packed field")
        return i
    if zig and wt == 0:
        v, i = read_varint(buf, i)
        out.append((v >> 1) ^ -(v & 1))
        return i
    if not zig and wt == 1:
        out.append(unpack_double(buf, i)[0])
        return i + 8
    raise ProtoError(f"unexpected wire type {wt} for a repeated field")


def _histograms(
    buf: bytes, metrics: list[int], prefix: bytes, name: str, st: ScanState, gauge: bool
) -> None:
    records = st.records
    seen = st.seen_records
    created = st.created
    native_on = st.native
    for k in range(0, len(metrics), 2):
        mkey, lb, ls, le_, vb, vs, ve, ts = _metric_key(buf, metrics[k], metrics[k + 1], 0x3A, prefix)
        count_int = 0
        count_float = total = zt = zero_float = 0.0
        zero_int = 0
        schema = 0
        bounds: list[float] = []
        bvals: list[float] = []
        pos_spans: list[tuple[int, int]] = []
        neg_spans: list[tuple[int, int]] = []
        pos_d: list[int] = []
        neg_d: list[int] = []
        pos_c: list[float] = []
        neg_c: list[float] = []
        ct = None
        bex: list[tuple[int, tuple | None]] = []  # (bucket index, exemplar)
        nex: list[tuple | None] = []  # the native exemplars field
        i = vs
        while i < ve:
            t = vb[i]
            if t < 0x80:
                i += 1
            else:
                t, i = read_varint(vb, i)
            if t == 0x1A:  # classic bucket
                n = vb[i]
                if n < 0x80:
                    i += 1
                else:
                    n, i = read_varint(vb, i)
                stop = i + n
                if vb[i] == 0x08:  # canonical {count, upper bound}, read in place
                    ci = vb[i + 1]
                    j = i + 2
                    if ci >= 0x80:
                        ci, j = read_varint(vb, i + 1)
                    if j + 9 == stop and vb[j] == 0x11:
                        bounds.append(unpack_double(vb, j + 1)[0])
                        bvals.append(float(ci))
                        i = stop
                        continue
                ub = 0.0
                ci = 0
                cf = 0.0
                while i < stop:
                    t, i = read_varint(vb, i)
                    if t == 0x08:
                        ci, i = read_varint(vb, i)
                    elif t == 0x11:
                        ub = unpack_double(vb, i)[0]
                        i += 8
                    elif t == 0x21:
                        cf = unpack_double(vb, i)[0]
                        i += 8
                    elif t == 0x1A:
                        n, i = read_varint(vb, i)
                        bex.append((len(bounds), _exemplar(vb, i, i + n)))
                        i += n
                    else:
                        i = skip(vb, i, t & 7)
                _end(i, stop, "bucket")
                bounds.append(ub)
                bvals.append(cf if cf != 0 else float(ci))
            elif t == 0x08:
                count_int, i = read_varint(vb, i)
            elif t == 0x11:
                total = unpack_double(vb, i)[0]
                i += 8
            elif t == 0x21:
                count_float = unpack_double(vb, i)[0]
                i += 8
            elif t == 0x28:
                schema, i = read_varint(vb, i)
                schema = unzigzag(schema & 0xFFFFFFFF)
                if schema >= 1 << 31:
                    schema -= 1 << 32
            elif t == 0x31:
                zt = unpack_double(vb, i)[0]
                i += 8
            elif t == 0x38:
                zero_int, i = read_varint(vb, i)
            elif t == 0x41:
                zero_float = unpack_double(vb, i)[0]
                i += 8
            elif t == 0x4A or t == 0x62:
                n, i = read_varint(vb, i)
                _spans(vb, i, i + n, neg_spans if t == 0x4A else pos_spans)
                i += n
            elif t >> 3 in (10, 13):
                i = _packed(vb, i, t & 7, neg_d if t >> 3 == 10 else pos_d, True)
            elif t >> 3 in (11, 14):
                i = _packed(vb, i, t & 7, neg_c if t >> 3 == 11 else pos_c, False)
            elif t == 0x7A and created is not None:
                n, i = read_varint(vb, i)
                ct = _timestamp_ms(vb, i, i + n)
                i += n
            elif t == 0x82:  # field 16: a native histogram's exemplars
                n, i = read_varint(vb, i)
                nex.append(_exemplar(vb, i, i + n))
                i += n
            else:
                i = skip(vb, i, t & 7)
        _end(i, max(ve, vs), "histogram")
        is_native = native_on and (
            bool(pos_spans) or bool(neg_spans) or zt > 0 or zero_int > 0
        )
        classic = not is_native or (st.classic and bool(bounds))
        count = count_float if count_float != 0 else float(count_int)
        if classic:
            cut = len(bounds)
            for b, ub in enumerate(bounds):
                if ub == _INF:
                    cut = b + 1
                    break
            else:
                bounds.append(_INF)
                bvals.append(count)
                cut = len(bounds)
            del bounds[cut:], bvals[cut:]
            shape = (is_native, *bounds)
        else:
            shape = (is_native,)
        rec = records.get(mkey)
        if rec is None or rec[0] != shape:
            series: list[tuple[bytes, str, tuple[str, str] | None]] = []
            if is_native:
                series.append((b"\xffh", name, None))
            if classic:
                series.append((b"\xffc", name + "_count", None))
                series.append((b"\xffs", name + "_sum", None))
                for ub in bounds:
                    series.append((b"\xffb" + pack_double(ub), name + "_bucket", ("le", format_om_float(ub))))
            rec = _record(st, mkey, shape, series, lb, ls, le_)
            records[mkey] = rec
        seen[mkey] = rec
        if is_native:
            hkey = rec[1][0]
            hlab = rec[2][0]
            st.hkeys.append(hkey)
            if hlab:
                try:
                    h = nativehist.build(
                        count_int=count_int,
                        count_float=count_float,
                        total=total,
                        schema=schema,
                        zero_threshold=zt,
                        zero_int=zero_int,
                        zero_float=zero_float,
                        pos_spans=pos_spans,
                        pos_deltas=pos_d,
                        pos_counts=pos_c,
                        neg_spans=neg_spans,
                        neg_deltas=neg_d,
                        neg_counts=neg_c,
                        gauge=gauge,
                    )
                    if st.bucket_limit or h.schema > st.max_schema:
                        h = nativehist.limit(h, st.max_schema, st.bucket_limit)
                except nativehist.HistogramError as exc:
                    if str(exc) == "histogram bucket limit exceeded":
                        raise
                    raise nativehist.HistogramError(f"native histogram {name!r}: {exc}") from None
                st.hists.append((hlab, h, ts, hkey))
                # Native: the exemplars field, else the buckets'; only those with a timestamp.
                for e in nex if nex else [e for _, e in bex]:
                    if e is not None and e[2] is not None:
                        st.exemplars.append((hlab, e[2], ts or None, e[1], e[0]))
            if classic:
                _, keys, labs, _ = rec
                _emit(st, (shape, keys[1:], labs[1:], all(labs[1:])), [count, total, *bvals], ts)
        else:
            _emit(st, rec, [count, total, *bvals], ts)
        if classic and bex:  # a bucket's exemplar goes with its _bucket series
            labs = rec[2]
            first = 3 if is_native else 2  # after _count and _sum (and the native series)
            for b, e in bex:
                if e is not None and b < len(bounds) and labs[first + b]:
                    st.exemplars.append((labs[first + b], e[2], ts or None, e[1], e[0]))
        if ct is not None and created is not None:
            created[labels_of(name, _label_pairs(lb, ls, le_))] = ct


# ---------------------------------------------------------------- standalone parse


def parse_protobuf(
    body: bytes,
    native_histograms: bool = True,
    classic_histograms: bool = False,
) -> Exposition:
    """Parse a whole delimited-protobuf body (raises ProtoError); for tests and tools.

    ``histograms`` of the result holds the native histogram samples; ``created``
    the created timestamps (counters by series; summaries and histograms by the
    family name and labels).
    """
    cache: dict[bytes, Labels] = {}

    def resolve_pairs(key: bytes, name: str, pairs: list[tuple[str, str]]) -> Labels:
        lab = labels_of(name, pairs)
        cache[key] = lab
        return lab

    st = ScanState(
        cache=cache,
        resolve=lambda key: (),
        resolve_pairs=resolve_pairs,
        native=native_histograms,
        classic=classic_histograms,
        created={},
    )
    scan_protobuf(body, st)
    ts: list[int | None] = [None] * len(st.values)
    for idx, t, _ in st.explicit:
        ts[idx] = t
    samples = [Sample(lab, v, t) for lab, v, t in zip(st.labels, st.values, ts, strict=True)]
    hists: list[tuple[Labels, Histogram, int | None]] = [
        (lab, h, t or None) for lab, h, t, _ in st.hists
    ]
    assert st.created is not None
    return Exposition(samples, build_metadata(st.meta_items, {}), hists, st.created)
