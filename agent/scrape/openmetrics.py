"""OpenMetrics 1.0 text, on the same scrape-cache hot path as the Prometheus text format.

Differences from 0.0.4 that matter on the hot path: timestamps are float
seconds, a sample may end with an exemplar (``# {labels} value [ts]``), the body
must end with ``# EOF`` and nothing may follow it, blank lines and free-form
comments are errors, and there is a ``# UNIT`` line. A line with an exemplar
takes a slower quote-aware path; its exemplar is validated and collected in
``ScanState.exemplars`` (series labels, own timestamp or None, the sample's
timestamp or None, value, exemplar labels) for the scrape loop to forward.

``parse_openmetrics`` is the standalone form; ``omvalidate.parse_strict`` adds
the family-level rules of the OpenMetrics specification.
"""

from __future__ import annotations

from agent.labels import Labels
from agent.scrape.textparse import (
    Exposition,
    ParseError,
    Sample,
    ScanState,
    _finish_chunk,
    _parse_series_slow,
    _show,
    build_metadata,
    decode_help,
    iter_line_chunks,
    labels_of,
    parse_comment,
    parse_float,
    parse_series,
)

OM_TYPES = {
    "counter",
    "gauge",
    "histogram",
    "gaugehistogram",
    "summary",
    "info",
    "stateset",
    "unknown",
}
MAX_EXEMPLAR_RUNES = 128


def parse_om_ts(tok: bytes, check_range: bool = True) -> int:
    """OpenMetrics timestamps are float seconds; Prometheus truncates to ms.

    A scrape needs an int64; the standalone parser accepts any finite value.
    """
    try:
        t = parse_float(tok)
    except ValueError:
        raise ValueError(f"invalid timestamp {_show(tok)}") from None
    if t != t or t in (float("inf"), float("-inf")):
        raise ValueError(f"invalid timestamp {_show(tok)}")
    ms = int(t * 1000)
    if check_range and not -(2**63) <= ms < 2**63:
        raise ValueError(f"timestamp {_show(tok)} out of range")
    return ms


def om_comment_entry(line: bytes) -> tuple[str, str, str] | tuple[()]:
    """(kind, family, value) for TYPE/HELP/UNIT, ``("EOF", "", "")`` for ``# EOF``."""
    if line == b"# EOF":
        return ("EOF", "", "")
    if not line.startswith(b"# "):
        raise ValueError(f"invalid comment line {_show(line[:40])}")
    s = line[2:]
    kw = s[:5]
    if kw not in (b"HELP ", b"TYPE ", b"UNIT "):
        raise ValueError(f"invalid comment line {_show(line[:40])}")
    if kw == b"UNIT ":
        # parse_comment knows HELP/TYPE only; reuse it by renaming the keyword.
        c = parse_comment(b"# HELP " + s[5:])
    else:
        c = parse_comment(line)
    if c is None:
        raise ValueError(f"expected metric name and text after {kw.strip().decode()}")
    _, name, rest = c
    kind = kw.strip().decode()
    if kind == "TYPE":
        t = rest.decode("utf-8", "replace")
        if t not in OM_TYPES:
            raise ValueError(f"invalid metric type {t!r}")
        return kind, name, t
    if kind == "UNIT":
        return kind, name, rest.decode("utf-8", "replace")
    return kind, name, decode_help(rest)


def split_sample(line: bytes) -> tuple[bytes, list[bytes], bytes | None]:
    """(series text, [value, ts?], exemplar text or None) for a line with a possible exemplar."""
    n = len(line)
    i = 0
    if line[:1] == b"{" or b"{" in line[: line.find(b" ") if b" " in line else n]:
        j = line.find(b"{")
        i = j + 1
        in_q = False
        while i < n:
            c = line[i]
            if in_q:
                if c == 0x5C:
                    i += 2
                    continue
                if c == 0x22:
                    in_q = False
            elif c == 0x22:
                in_q = True
            elif c == 0x7D:
                break
            i += 1
        if i >= n:
            raise ValueError("unexpected end of label set, missing '}'")
        key, rest = line[: i + 1], line[i + 1 :]
    else:
        sp = line.find(b" ")
        if sp < 0:
            raise ValueError("expected value after metric")
        key, rest = line[:sp], line[sp:]
    ex = None
    h = rest.find(b" # ")
    if h >= 0:
        rest, ex = rest[:h], rest[h + 3 :]
    return key, rest.split(b" ")[1:], ex


def parse_exemplar(ex: bytes) -> tuple[Labels, float, int | None]:
    """``{labels} value [timestamp]`` as (labels, value, timestamp ms or None); label text at most 128 runes."""
    if not ex.startswith(b"{"):
        raise ValueError("invalid exemplar: expected '{'")
    key, rest, more = split_sample(b"x" + ex)
    if more is not None:
        raise ValueError("invalid exemplar: more than one")
    _, pairs = _parse_series_slow(key, True)
    runes = sum(len(n) + len(v) for n, v in pairs)
    if runes > MAX_EXEMPLAR_RUNES:
        raise ValueError(
            f"exemplar labels have {runes} UTF-8 characters, exceeding the limit of 128"
        )
    if not rest or len(rest) > 2 or any(not t for t in rest):
        raise ValueError("invalid exemplar value")
    value = parse_float(rest[0])
    ts = parse_om_ts(rest[1]) if len(rest) == 2 else None
    return tuple(sorted(pairs)), value, ts


def scan_openmetrics(lines: list[bytes] | None, st: ScanState) -> None:
    """Like ``scan_text`` for OpenMetrics; call once more with ``None`` at end of input."""
    if lines is None:
        if not st.om_eof:
            raise ParseError(st.lineno, "data does not end with # EOF")
        return
    get = st.cache.get
    resolve = st.resolve
    keys: list[bytes] = []
    labs: list[Labels] = []
    toks: list[bytes] = []
    explicit: list[tuple[int, int, bytes]] = []
    comments = st.comments
    meta_append = st.meta_items.append
    lineno = st.lineno
    try:
        for line in lines:
            lineno += 1
            if st.om_eof:
                if line or st.om_blank:
                    raise ValueError("unexpected data after # EOF")
                st.om_blank = lineno
                continue
            if not line:
                if st.om_blank:
                    raise ValueError("unexpected blank line")
                st.om_blank = lineno
                continue
            if st.om_blank:
                lineno = st.om_blank
                raise ValueError("unexpected blank line")
            if line[0] == 35:
                r = comments.get(line)
                if r is None:
                    r = comments[line] = om_comment_entry(line)
                if r and r[0] == "EOF":
                    st.om_eof = True
                elif r:
                    meta_append(r)
                continue
            ex = None
            if b"# " in line:
                key, rest, ex = split_sample(line)
            else:
                i = line.rfind(b"}")
                if i >= 0:
                    key = line[: i + 1]
                    rest = line[i + 1 :].split(b" ")
                    if rest[0]:
                        raise ValueError("expected a single space before the value")
                    del rest[0]
                else:
                    rest = line.split(b" ")
                    key = rest[0]
                    del rest[0]
            lab = get(key)
            if lab is None:
                lab = resolve(key)
            if ex is not None:
                exemplar = parse_exemplar(ex)
            sample_ts = None
            if len(rest) != 1:
                if len(rest) == 2:
                    sample_ts = parse_om_ts(rest[1], st.check_ts_range)
                    explicit.append((len(keys), sample_ts, key))
                elif not rest:
                    raise ValueError("expected value after metric")
                else:
                    raise ValueError(f"unexpected {_show(rest[2])} after timestamp")
            if not rest[0]:
                raise ValueError("expected value after metric")
            if ex is not None and lab:
                st.exemplars.append((lab, exemplar[2], sample_ts, exemplar[1], exemplar[0]))
            keys.append(key)
            labs.append(lab)
            toks.append(rest[0])
    except ParseError:
        raise
    except ValueError as exc:
        raise ParseError(lineno, str(exc)) from None
    _finish_chunk(lines, st, keys, labs, toks, explicit)
    st.lineno = lineno


def parse_openmetrics(body: bytes) -> Exposition:
    """Parse a whole OpenMetrics body (raises ParseError)."""
    cache: dict[bytes, Labels] = {}

    def resolve(key: bytes) -> Labels:
        name, pairs = parse_series(key)
        lab = labels_of(name, pairs)
        cache[key] = lab
        return lab

    st = ScanState(cache=cache, resolve=resolve, check_ts_range=False)
    for lines in iter_line_chunks(body):
        scan_openmetrics(lines, st)
    scan_openmetrics(None, st)
    ts: list[int | None] = [None] * len(st.values)
    for idx, t, _ in st.explicit:
        ts[idx] = t
    samples = [Sample(lab, v, t) for lab, v, t in zip(st.labels, st.values, ts, strict=True)]
    return Exposition(samples, build_metadata(st.meta_items, {}))
