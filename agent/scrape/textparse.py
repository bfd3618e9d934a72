"""The Prometheus text exposition format 0.0.4, parsed the way Prometheus' scraper does.

The hot path is ``scan_text``: one loop over the lines of a body, where a line
costs a ``rfind``, a slice, one dict look-up in the scrape cache (keyed by the
raw series text before the value) and a ``float()``. Only a cache miss parses
the series text into labels (``parse_series``), so a steady-state scrape never
tokenizes label sets. Everything here works on bytes; nothing walks a line one
character at a time unless it is already known to be broken or unusual
(quoted UTF-8 names), where a careful scanner gives a precise reason.

``parse_text`` is the standalone form (tests, tools); with ``strict=True`` it
also applies the extra checks of client_golang's ``expfmt.TextParser`` (final
newline, one HELP/TYPE per family, TYPE before samples, escapes, le/quantile
floats, histogram counts), which Prometheus' scraper itself does not.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import compress, count, islice, repeat
from operator import itemgetter

from agent.labels import Labels
from agent.storage import Histogram, Metadata

TEXT_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
MAX_TS = 2**63


class ParseError(ValueError):
    """A malformed exposition: names the 1-based line and the reason."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


# ---------------------------------------------------------------- series text

_NAME = rb"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LNAME = rb"[a-zA-Z_][a-zA-Z0-9_]*"
_LVAL = rb'"[^"\\\n]*(?:\\.[^"\\\n]*)*"'
_PAIR_SRC = rb"[ \t]*" + _LNAME + rb"[ \t]*=[ \t]*" + _LVAL + rb"[ \t]*"
_FAST_SERIES = re.compile(
    rb"[ \t]*("
    + _NAME
    + rb")[ \t]*(?:\{((?:"
    + _PAIR_SRC
    + rb",)*(?:"
    + _PAIR_SRC
    + rb")?[ \t]*)\})?[ \t]*"
)
_PAIR = re.compile(rb"(" + _LNAME + rb')[ \t]*=[ \t]*"([^"\\\n]*(?:\\.[^"\\\n]*)*)"')
_NAME_RE = re.compile(_NAME)
_LNAME_RE = re.compile(_LNAME)
_ESCAPE = re.compile(rb"\\(.)", re.S)
_PROM_ESCAPES = {b"\\": b"\\", b'"': b'"', b"n": b"\n"}


def _unescape_lenient(m: re.Match[bytes]) -> bytes:
    return _PROM_ESCAPES.get(m.group(1), m.group(0))


def _unescape_strict(m: re.Match[bytes]) -> bytes:
    r = _PROM_ESCAPES.get(m.group(1))
    if r is None:
        raise ValueError("invalid escape sequence")
    return r


def decode_value(raw: bytes, strict: bool = False) -> str:
    """A quoted label value's content, unescaped; Prometheus keeps unknown escapes verbatim."""
    if b"\\" in raw:
        raw = _ESCAPE.sub(_unescape_strict if strict else _unescape_lenient, raw)
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise ValueError(f"invalid UTF-8 label value: {raw!r}") from None


def parse_series(key: bytes, strict: bool = False) -> tuple[str, list[tuple[str, str]]]:
    """``name{a="b",...}`` into the metric name and its label pairs (unsorted, as written).

    Raises ValueError with the reason. Quoted (UTF-8) metric and label names,
    as in ``{"my.metric", "a.b"="c"}``, are accepted.
    """
    if b"\\" not in key and key[-1:] == b"}":
        fast = _split_series(key)
        if fast is not None:
            return fast
    m = _FAST_SERIES.fullmatch(key)
    if m is None:
        return _parse_series_slow(key, strict)
    name = m.group(1).decode()
    body = m.group(2)
    pairs: list[tuple[str, str]] = []
    if body:
        for ln, lv in _PAIR.findall(body):
            pairs.append((ln.decode(), decode_value(lv, strict)))
    return name, pairs


_SIMPLE_PAIRS = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"\\]*)"')
_SIMPLE_BODY = re.compile(
    r'[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*")*,?'
)
_SIMPLE_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def _split_series(key: bytes) -> tuple[str, list[tuple[str, str]]] | None:
    """The common shape ``name{a="x",b="y"}`` (no escapes, no spaces) with two C-speed regexes.

    Anything unusual (spaces, quoted names, invalid UTF-8) returns None and
    goes to the general parser, which also explains what is wrong.
    """
    try:
        s = key.decode()
    except UnicodeDecodeError:
        return None
    i = s.find("{")
    if i <= 0 or _SIMPLE_NAME.fullmatch(s, 0, i) is None:
        return None
    body = s[i + 1 : -1]
    if not body:
        return s[:i], []
    if _SIMPLE_BODY.fullmatch(body) is None:
        return None
    return s[:i], _SIMPLE_PAIRS.findall(body)


def _parse_series_slow(key: bytes, strict: bool) -> tuple[str, list[tuple[str, str]]]:
    """The careful path: quoted names, and a precise reason for whatever is wrong."""
    s = key
    n = len(s)
    i = _skip_ws(s, 0)
    name: str | None = None
    m = _NAME_RE.match(s, i)
    if m:
        name = m.group().decode()
        i = _skip_ws(s, m.end())
        if i >= n:
            return name, []
        if s[i] != 0x7B:  # "{"
            raise ValueError(f"unexpected {_show(s[i : i + 1])} after metric name {name!r}")
    elif i >= n:
        raise ValueError("empty line where a sample was expected")
    elif s[i] != 0x7B:
        raise ValueError(f"invalid metric name starting with {_show(s[i : i + 1])}")
    i += 1
    pairs: list[tuple[str, str]] = []
    first = True
    while True:
        i = _skip_ws(s, i)
        if i >= n:
            raise ValueError("unexpected end of label set, missing '}'")
        c = s[i]
        if c == 0x7D:  # "}"
            i += 1
            break
        if c == 0x22:  # '"'
            text, i = _quoted(s, i, strict)
            j = _skip_ws(s, i)
            if j < n and s[j] in (0x2C, 0x7D):  # a bare quoted string: the metric name
                if not first or name is not None:
                    if name is not None:
                        raise ValueError("multiple metric names")
                    raise ValueError(f"expected '=' after label name {text!r}")
                if text == "":
                    raise ValueError("invalid metric name: empty")
                name = text
                i = j
            elif j < n and s[j] == 0x3D:  # "="
                lname = text
                if lname == "":
                    raise ValueError("invalid label name: empty")
                i = _skip_ws(s, j + 1)
                if i >= n or s[i] != 0x22:
                    raise ValueError(f"expected '\"' at start of label value for {lname!r}")
                value, i = _quoted(s, i, strict)
                pairs.append((lname, value))
            else:
                if j < n and s[j] == 0x2E:
                    raise ValueError("unexpected end of metric name")
                raise ValueError(f"expected '=' after label name {text!r}")
        else:
            m = _LNAME_RE.match(s, i)
            if m is None:
                raise ValueError(f"invalid label name starting with {_show(s[i : i + 1])}")
            lname = m.group().decode()
            i = _skip_ws(s, m.end())
            if i >= n or s[i] != 0x3D:
                raise ValueError(f"expected '=' after label name {lname!r}")
            i = _skip_ws(s, i + 1)
            if i >= n or s[i] != 0x22:
                raise ValueError(f"expected '\"' at start of label value for {lname!r}")
            value, i = _quoted(s, i, strict)
            pairs.append((lname, value))
        first = False
        i = _skip_ws(s, i)
        if i < n and s[i] == 0x2C:  # ","
            i += 1
            continue
        if i < n and s[i] == 0x7D:
            i += 1
            break
        raise ValueError("unexpected end of label value, expected ',' or '}'")
    if _skip_ws(s, i) != n:
        raise ValueError(f"unexpected {_show(s[i : i + 1])} after label set")
    if name is None:
        raise ValueError("metric name not set")
    return name, pairs


def _quoted(s: bytes, i: int, strict: bool) -> tuple[str, int]:
    """The string starting at the quote at ``i``; returns it unescaped and the index after it."""
    j = i + 1
    n = len(s)
    while j < n:
        c = s[j]
        if c == 0x5C:  # backslash
            j += 2
            continue
        if c == 0x22:
            return decode_value(s[i + 1 : j], strict), j + 1
        j += 1
    raise ValueError("unterminated quoted string")


def _skip_ws(s: bytes, i: int) -> int:
    n = len(s)
    while i < n and s[i] in (0x20, 0x09):
        i += 1
    return i


def _show(b: bytes) -> str:
    return repr(b.decode("utf-8", "backslashreplace"))


# ---------------------------------------------------------------- values


def parse_float(tok: bytes) -> float:
    """Go's ParseFloat as Prometheus uses it: no '_', no hex, NaN unsigned only."""
    v = float(tok)
    if b"_" in tok:
        raise ValueError(f"unsupported character in float: {_show(tok)}")
    if v != v and tok.lower() != b"nan":
        raise ValueError(f"invalid float: {_show(tok)}")
    return v


def value_error(tok: bytes) -> str:
    try:
        parse_float(tok)
    except ValueError as exc:
        if "float" in str(exc) and "could not convert" not in str(exc):
            return str(exc)
    return f"invalid value {_show(tok)}: expected a float"


def parse_ts_ms(tok: bytes) -> int:
    if not (tok.isdigit() or (tok[:1] == b"-" and tok[1:].isdigit())):
        raise ValueError(f"invalid timestamp {_show(tok)}: expected an integer")
    ts = int(tok)
    if not -MAX_TS <= ts < MAX_TS:
        raise ValueError(f"timestamp {_show(tok)} out of range")
    return ts


# ---------------------------------------------------------------- comments


def parse_comment(line: bytes, strict: bool = False) -> tuple[str, str, bytes] | None:
    """A ``# HELP``/``# TYPE`` line as (kind, family, rest); None for a plain comment.

    As in client_golang, a HELP/TYPE keyword with no name, or a name ending the
    line, is a plain comment.
    """
    s = line.lstrip(b" \t")[1:].lstrip(b" \t")
    if s[:4] not in (b"HELP", b"TYPE") or s[4:5] not in (b" ", b"\t"):
        return None
    kind = s[:4].decode()
    rest = s[5:].lstrip(b" \t")
    if not rest:
        return None
    if rest[:1] == b'"':
        try:
            name, end = _quoted(rest, 0, strict)
        except ValueError as exc:
            if strict and "escape" in str(exc):
                raise
            raise ValueError(f"expected metric name after {kind}") from None
    else:
        m = _NAME_RE.match(rest)
        if m is None:
            raise ValueError(f"expected metric name after {kind}, got {_show(rest[:1])}")
        name, end = m.group().decode(), m.end()
    tail = rest[end:]
    if not tail:
        return None
    if tail[:1] not in (b" ", b"\t"):
        raise ValueError(f"invalid metric name in comment: {_show(rest.split()[0])}")
    return kind, name, tail.lstrip(b" \t")


_HELP_ESC = re.compile(rb"\\([\\n])")


def decode_help(raw: bytes) -> str:
    if b"\\" in raw:
        raw = _HELP_ESC.sub(lambda m: b"\n" if m.group(1) == b"n" else b"\\", raw)
    return raw.decode("utf-8", "replace")


_KIND_INDEX = {"TYPE": 0, "HELP": 1, "UNIT": 2}


def comment_entry(line: bytes) -> tuple[str, str, str] | tuple[()]:
    """A comment line as (kind, family, value), or ``()`` for a plain comment; ValueError if malformed."""
    c = parse_comment(line)
    if c is None:
        return ()
    kind, name, rest = c
    if kind == "TYPE":
        t = rest.rstrip(b" \t").decode("utf-8", "replace")
        if t not in TEXT_TYPES:
            raise ValueError(f"invalid metric type {t!r}")
        return kind, name, ("unknown" if t == "untyped" else t)
    return kind, name, decode_help(rest)


def build_metadata(
    items: list[tuple[str, str, str]], known: dict[tuple[str, str, str, str], Metadata]
) -> dict[str, Metadata]:
    """Family name -> Metadata from the comment entries of one scrape.

    ``known`` keeps the Metadata objects of earlier scrapes so an unchanged
    family hands on the same object instead of a new one every scrape.
    """
    fam: dict[str, list[str]] = {}
    for kind, name, val in items:
        f = fam.get(name)
        if f is None:
            f = fam[name] = ["unknown", "", ""]
        f[_KIND_INDEX[kind]] = val
    out: dict[str, Metadata] = {}
    for name, (t, h, u) in fam.items():
        k = (name, t, h, u)
        md = known.get(k)
        if md is None:
            md = known[k] = Metadata(t, h, u)
        out[name] = md
    return out


# ---------------------------------------------------------------- the hot loop


@dataclass(slots=True, frozen=True)
class Chunk:
    """One chunk of a text body (``iter_line_chunks``) as scanned, less its values."""

    lines: int  # lines in the chunk, the last (empty after a final newline) included
    samples: int  # sample lines among them
    mask: bytes  # per line: 1 for a sample line, 0 for a comment or blank line
    others: list[bytes]  # the comment and blank lines, whole, in order
    meta: list[tuple[str, str, str]]  # what those comment lines said (``comment_entry``)


@dataclass(slots=True, frozen=True)
class Shape:
    """A target's text body as last scanned, less its values: which lines are samples, and the rest.

    Kept by the scrape cache between scrapes (``ScanState.shape``). It holds no
    series text: the sample lines' series text is the cache's own keys, in line
    order (``new_shape`` puts the cache's entries in that order), so the next
    scrape compares its lines with the cache's keys in order, with no hashing
    and no look-up, and never has to trust the shape: any change to the cache
    or to the body's series fails the comparison and takes the bulk scan.
    """

    chunks: tuple[Chunk, ...]


@dataclass(slots=True)
class ScanState:
    """What one scrape accumulates while its body is scanned in chunks.

    ``cache`` maps raw series text to the final label set (``()`` = dropped);
    ``resolve(key)`` builds and stores the entry for a miss (raising ValueError
    with a reason). Samples of kept series go to ``labels``/``values``;
    ``keys`` records every sample line's series text, in order, for staleness,
    duplicates and eviction; ``explicit`` records (sample index, timestamp ms,
    key) for samples that carried their own timestamp. ``comments`` caches
    parsed comment lines across scrapes; ``meta_items`` collects this scrape's.
    """

    cache: dict[bytes, Labels]
    resolve: Callable[[bytes], Labels]
    comments: dict[bytes, tuple] = field(default_factory=dict)
    meta_items: list[tuple[str, str, str]] = field(default_factory=list)
    keys: list[bytes] = field(default_factory=list)
    labels: list[Labels] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    explicit: list[tuple[int, int, bytes]] = field(default_factory=list)
    lineno: int = 0
    om_eof: bool = False  # OpenMetrics: "# EOF" seen
    om_blank: int = 0  # OpenMetrics: line number of a blank line not yet known to be the last
    check_ts_range: bool = True  # a scrape needs int64 timestamps; standalone parsing does not
    # Protobuf only (see protoparse): native histogram series keys (kept or not) and the
    # kept ones as (labels, histogram, explicit timestamp or 0, key); label building
    # from decoded pairs; per-metric records seen this scrape; histogram options.
    hkeys: list[bytes] = field(default_factory=list)
    hists: list[tuple] = field(default_factory=list)
    resolve_pairs: Callable[[bytes, str, list[tuple[str, str]]], Labels] | None = None
    records: dict[bytes, tuple] = field(default_factory=dict)
    seen_records: dict[bytes, tuple] = field(default_factory=dict)
    native: bool = True
    classic: bool = False
    max_schema: int = 8
    bucket_limit: int = 0
    created: dict[Labels, int] | None = None
    # OpenMetrics and protobuf: exemplars of kept series as (series labels, exemplar
    # timestamp ms or None, the sample's own timestamp ms or None, value, exemplar labels).
    exemplars: list[tuple] = field(default_factory=list)
    # Text: the body's shape at the last scrape; this scrape's chunks (None: no shape to
    # keep, as for other formats); how many of them matched the last shape's.
    shape: Shape | None = None
    chunks: list[Chunk] | None = None
    matched: int = 0


_rpartition = bytes.rpartition
_first = itemgetter(0)
_third = itemgetter(2)


def scan_text(lines: list[bytes], st: ScanState) -> None:
    """Scan complete lines of a text-format body into ``st``; raises ParseError.

    Steady first: a chunk laid out as at the last scrape (the same lines but
    for the values, see ``Shape``) is checked against the cache's keys in
    order (``_scan_steady``). Else bulk: every line is split at its last
    space and its series text looked up in the cache with C-level ``map``
    calls, no Python code per line. A cache key is series text once read in
    full by the careful scan below, so a line that is ``key + " " + token``
    with a known key means what the careful scan would make of it: that
    series, that value token. Lines that miss (comments, new series,
    timestamps, unusual spacing) go one by one through the careful scan's
    logic. Whatever looks wrong (a token that is not a float) sends the whole
    chunk through the careful scan, which names the line and the reason;
    nothing in ``st`` changes until the chunk is known good.
    """
    if st.lineno == 0:
        st.chunks, st.matched = [], 0
    chunks = st.chunks
    if chunks is not None and st.shape is not None and st.matched == len(chunks):
        known = st.shape.chunks
        if len(chunks) < len(known) and _scan_steady(lines, st, known[len(chunks)]):
            chunks.append(known[len(chunks)])
            st.matched += 1
            return
    n = len(lines)
    parts = list(map(_rpartition, lines, repeat(b" ", n)))
    keys = list(map(_first, parts))
    get = st.cache.get
    labs = list(map(get, keys))
    toks = list(map(_third, parts))
    del parts
    explicit: list[tuple[int, int, bytes]] = []
    meta: list[tuple[str, str, str]] = []
    skip: bytearray | None = None
    if None in labs:
        try:
            skip = _scan_misses(lines, st, keys, labs, toks, explicit, meta)
        except ValueError:  # ParseError too: let the careful scan report it
            st.chunks = None
            _scan_text_careful(lines, st)
            return
    try:
        _finish_chunk(lines, st, keys, labs, toks, explicit)
    except ParseError:
        st.chunks = None
        _scan_text_careful(lines, st)
        return
    st.meta_items += meta
    st.lineno += n
    if chunks is not None:
        if explicit:  # such a line's series text is not what splitting at the last space gives
            st.chunks = None
        elif skip is None:
            chunks.append(Chunk(n, n, b"\x01" * n, [], meta))
        else:
            mask = bytes(skip)
            chunks.append(Chunk(n, len(keys), mask, list(compress(lines, mask.translate(_INVERT))), meta))


_INVERT = bytes.maketrans(b"\x00\x01", b"\x01\x00")


def _scan_steady(lines: list[bytes], st: ScanState, chunk: Chunk) -> bool:
    """A chunk laid out as ``chunk``, its series the cache's next keys in order; False (nothing done) if not.

    The same outcome as the bulk scan: a sample line is ``key + " " + token``
    with ``key`` a cache key, here the next key in the cache's order rather
    than one looked up.
    """
    cache = st.cache
    start = len(st.keys)
    if len(lines) != chunk.lines or len(cache) < start + chunk.samples:
        return False
    others = chunk.others
    if others and list(compress(lines, chunk.mask.translate(_INVERT))) != others:
        return False
    samples = list(compress(lines, chunk.mask)) if others else lines
    parts = list(map(_rpartition, samples, repeat(b" ", len(samples))))
    keys = list(map(_first, parts))
    stop = start + chunk.samples
    whole = start == 0 and stop == len(cache)
    if keys != (list(cache) if whole else list(islice(cache, start, stop))):
        return False  # bytes compare by length and content: no hashing
    labs = list(cache.values()) if whole else list(islice(cache.values(), start, stop))
    toks = list(map(_third, parts))
    del parts
    try:
        _finish_chunk(lines, st, keys, labs, toks, [])
    except ParseError:
        return False  # the careful scan explains it
    st.meta_items += chunk.meta
    st.lineno += len(lines)
    return True


def is_steady(st: ScanState) -> bool:
    """Whether the whole body matched the last shape: its keys are the cache's, each once, in order."""
    shape = st.shape
    return (
        shape is not None
        and st.chunks is not None
        and st.matched == len(st.chunks) == len(shape.chunks)
        and len(st.keys) == len(st.cache)
    )


def new_shape(st: ScanState) -> Shape | None:
    """This scrape's shape, once the cache holds exactly its keys (after eviction); None if none.

    Puts the cache's entries in line order when a series appeared among the
    others (or the target reordered its lines): the dict is rebuilt with this
    scrape's key objects, so no series text is held twice. None when a key
    repeats in the body or a chunk could not be shaped.
    """
    cache = st.cache
    keys = st.keys
    if st.chunks is None or len(cache) != len(keys):
        return None
    if keys != list(cache):
        lab_of = cache.copy()
        cache.clear()
        cache.update(zip(keys, map(lab_of.__getitem__, keys), strict=True))
    return Shape(tuple(st.chunks))


def _scan_misses(
    lines: list[bytes],
    st: ScanState,
    keys: list[bytes],
    labs: list,
    toks: list[bytes],
    explicit: list[tuple[int, int, bytes]],
    meta: list[tuple[str, str, str]],
) -> bytearray | None:
    """Resolve, in place, the lines the bulk look-up missed; drop comments and blank lines.

    Returns which lines were samples (1) and which were dropped (0), None if none was.
    Raises ValueError for anything the careful scan has to explain.
    """
    get = st.cache.get
    resolve = st.resolve
    comments = st.comments
    skip = bytearray(b"\x01") * len(lines)
    skipped = 0
    index = labs.index
    i = index(None)
    while True:
        line = lines[i]
        c = line[0] if line else 0
        if not line or c == 35 or ((c == 32 or c == 9) and line.lstrip(b" \t")[:1] == b"#"):
            if line:
                r = comments.get(line)
                if r is None:
                    r = comments[line] = comment_entry(line)
                if r:
                    meta.append(r)
            skip[i] = 0
            skipped += 1
        else:
            j = line.rfind(b"}")
            if j >= 0:
                key = line[: j + 1]
                rest = line[j + 1 :].split()
            else:
                rest = line.split()
                if not rest:
                    skip[i] = 0
                    skipped += 1
                    key = b""
                else:
                    key = rest[0]
                    del rest[0]
            if key:
                lab = get(key)
                if lab is None:
                    lab = resolve(key)
                if len(rest) != 1:
                    if len(rest) != 2:
                        raise ValueError("unusual sample line")
                    explicit.append((i - skipped, parse_ts_ms(rest[1]), key))
                keys[i] = key
                labs[i] = lab
                toks[i] = rest[0]
        try:
            i = index(None, i + 1)
        except ValueError:
            break
    if not skipped:
        return None
    keys[:] = compress(keys, skip)
    labs[:] = compress(labs, skip)
    toks[:] = compress(toks, skip)
    return skip


def _scan_text_careful(lines: list[bytes], st: ScanState) -> None:
    """The line-by-line scan: exact errors with line numbers; the reference for ``scan_text``.

    The per-line loop only slices and looks up; value tokens are converted
    afterwards in one ``map(float, ...)`` and checked in bulk (one ``in`` over
    the joined tokens for '_', one ``sum`` to notice a NaN), so the common line
    costs no Python-level float handling at all.
    """
    get = st.cache.get
    resolve = st.resolve
    keys: list[bytes] = []
    labs: list[Labels] = []
    toks: list[bytes] = []
    keys_append = keys.append
    labs_append = labs.append
    toks_append = toks.append
    explicit: list[tuple[int, int, bytes]] = []
    comments = st.comments
    meta_append = st.meta_items.append
    lineno = st.lineno
    try:
        for line in lines:
            lineno += 1
            if not line:
                continue
            c = line[0]
            if c == 35 or ((c == 32 or c == 9) and line.lstrip(b" \t")[:1] == b"#"):
                r = comments.get(line)
                if r is None:
                    r = comments[line] = comment_entry(line)
                if r:
                    meta_append(r)
                continue
            i = line.rfind(b"}")
            if i >= 0:
                key = line[: i + 1]
                rest = line[i + 1 :].split()
            else:
                rest = line.split()
                if not rest:
                    continue
                key = rest[0]
                del rest[0]
            lab = get(key)
            if lab is None:
                lab = resolve(key)
            if len(rest) != 1:
                if len(rest) == 2:
                    explicit.append((len(keys), parse_ts_ms(rest[1]), key))
                elif not rest:
                    raise ValueError("expected value after metric")
                else:
                    raise ValueError(f"unexpected {_show(rest[2])} after timestamp")
            keys_append(key)
            labs_append(lab)
            toks_append(rest[0])
    except ParseError:
        raise
    except ValueError as exc:
        raise ParseError(lineno, str(exc)) from None
    _finish_chunk(lines, st, keys, labs, toks, explicit)
    st.lineno = lineno


# Value tokens that recur (bucket counts, zeros, ones, idle counters: short tokens) and their
# floats: a hit is a dict look-up instead of a ``float()`` parse (~170 -> ~120 ns per token over
# the load test's bodies, see docs/performance.md). Filled from one chunk in _MEMO_EVERY, short
# tokens only, so tokens seen often are the ones likely to get in; cleared when full, so values
# that stopped recurring leave. Bounded: about 200 kB at _MEMO_MAX.
_MEMO: dict[bytes, float] = {}
_MEMO_MAX = 2048
_MEMO_EVERY = 16
_MEMO_SHORT = (8).__ge__
_memo_clock = count()


def _finish_chunk(
    lines: list[bytes],
    st: ScanState,
    keys: list[bytes],
    labs: list[Labels],
    toks: list[bytes],
    explicit: list[tuple[int, int, bytes]],
) -> None:
    """Convert a chunk's value tokens in bulk and move the kept samples into ``st``.

    A token found in ``_MEMO`` comes back as its float, which ``float()`` returns as is; the
    others are parsed, all in one C-level ``map``. The checks below see every token either way.
    """
    try:
        vals = list(map(float, map(_MEMO.get, toks, toks)))
    except ValueError:
        vals = []
        for j, tok in enumerate(toks):
            try:
                vals.append(float(tok))
            except ValueError:
                raise ParseError(_sample_lineno(lines, st.lineno, j), value_error(tok)) from None
    if b"_" in b" ".join(toks):
        for j, tok in enumerate(toks):
            if b"_" in tok:
                raise ParseError(_sample_lineno(lines, st.lineno, j), value_error(tok))
    total = sum(vals)
    if total != total:
        for j, v in enumerate(vals):
            if v != v and toks[j].lower() != b"nan":
                raise ParseError(_sample_lineno(lines, st.lineno, j), value_error(toks[j]))
    if not next(_memo_clock) % _MEMO_EVERY:
        if len(_MEMO) >= _MEMO_MAX:
            _MEMO.clear()
        _MEMO.update(compress(zip(toks, vals, strict=True), map(_MEMO_SHORT, map(len, toks))))
    st.keys += keys
    base = len(st.values)
    if () not in labs:
        st.labels += labs
        st.values += vals
        for j, ts, key in explicit:
            st.explicit.append((base + j, ts, key))
        return
    at = {j: (ts, key) for j, ts, key in explicit}
    out_l, out_v = st.labels, st.values
    for j, (lab, v) in enumerate(zip(labs, vals, strict=True)):
        if lab:
            e = at.get(j)
            if e is not None:
                st.explicit.append((len(out_v), e[0], e[1]))
            out_l.append(lab)
            out_v.append(v)


def _sample_lineno(lines: list[bytes], start: int, j: int) -> int:
    """The line number of the j-th sample line of a chunk (error path only)."""
    n = -1
    for k, line in enumerate(lines):
        s = line.lstrip(b" \t")
        if s and s[:1] != b"#":
            n += 1
            if n == j:
                return start + k + 1
    return start + len(lines)


def iter_line_chunks(body: bytes, chunk_bytes: int = 256 * 1024):  # noqa: ANN201 - generator
    """Split ``body`` into lists of lines, each list covering about ``chunk_bytes``.

    Lets the caller yield to the event loop between chunks instead of splitting
    a 20 MB body in one go. The final line needs no trailing newline.
    """
    pos, n = 0, len(body)
    while pos < n:
        end = body.find(b"\n", pos + chunk_bytes) if pos + chunk_bytes < n else -1
        if end < 0:
            yield body[pos:].split(b"\n")
            return
        yield body[pos:end].split(b"\n")
        pos = end + 1


# ---------------------------------------------------------------- standalone parse


@dataclass(slots=True)
class Sample:
    labels: Labels
    value: float
    timestamp_ms: int | None = None


@dataclass(slots=True)
class Exposition:
    samples: list[Sample]
    metadata: dict[str, Metadata]
    # Protobuf only: native histogram samples (labels, histogram, timestamp ms or None)
    # and created timestamps (ms) by the series (or, for summaries and histograms,
    # the family's base series) they belong to.
    histograms: list[tuple[Labels, Histogram, int | None]] = field(default_factory=list)
    created: dict[Labels, int] = field(default_factory=dict)


def labels_of(name: str, pairs: list[tuple[str, str]]) -> Labels:
    """Sorted label set with ``__name__``; raises ValueError on a repeated label name."""
    out = sorted([("__name__", name), *pairs])
    for a, b in zip(out, out[1:], strict=False):
        if a[0] == b[0]:
            raise ValueError(f"label name {a[0]!r} is not unique")
    return tuple(p for p in out if p[1] != "")


def parse_text(body: bytes, strict: bool = False) -> Exposition:
    """Parse a whole text-format body (raises ParseError). See the module docstring for ``strict``."""
    cache: dict[bytes, Labels] = {}

    def resolve(key: bytes) -> Labels:
        name, pairs = parse_series(key, strict)
        if strict:
            _strict_pairs(name, pairs)
        lab = labels_of(name, pairs)
        cache[key] = lab
        return lab

    if strict:
        _strict_checks(body)
    st = ScanState(cache=cache, resolve=resolve)
    for lines in iter_line_chunks(body):
        scan_text(lines, st)
    ts: list[int | None] = [None] * len(st.values)
    for idx, t, _ in st.explicit:
        ts[idx] = t
    samples = [Sample(lab, v, t) for lab, v, t in zip(st.labels, st.values, ts, strict=True)]
    return Exposition(samples, build_metadata(st.meta_items, {}))


def _strict_pairs(name: str, pairs: list[tuple[str, str]]) -> None:
    for ln, _ in pairs:
        if ln == "__name__":
            raise ValueError('label name "__name__" is reserved')


def _strict_checks(body: bytes) -> None:
    """client_golang's extra rules, line by line (slow; tests and tools only).

    Runs before the normal scan so the first offending line is the one reported;
    what it cannot read it leaves to the scan to report.
    """
    lines = body.split(b"\n")
    if body and not body.endswith(b"\n"):
        raise ParseError(len(lines), "unexpected end of input stream")
    helps: set[str] = set()
    types: dict[str, str] = {}
    seen_names: set[str] = set()
    for no, line in enumerate(lines, 1):
        s = line.strip(b" \t")
        if not s:
            continue
        if s[:1] == b"#":
            try:
                c = parse_comment(s, True)
            except ValueError as exc:
                raise ParseError(no, str(exc)) from None
            if c is None:
                continue
            kind, name, rest = c
            if kind == "HELP" and b"\\" in re.sub(rb"\\[\\n]", b"", rest):
                raise ParseError(no, "invalid escape sequence")
            if kind == "HELP":
                if name in helps:
                    raise ParseError(no, f"second HELP line for metric name {name!r}")
                helps.add(name)
            else:
                if name in types or name in seen_names:
                    raise ParseError(
                        no,
                        f'second TYPE line for metric name "{name}", or TYPE reported after samples',
                    )
                types[name] = rest.strip().decode()
            continue
        i = s.rfind(b"}")
        key = s[: i + 1] if i >= 0 else s.split()[0]
        try:
            name, pairs = parse_series(key, True)
        except ValueError as exc:
            raise ParseError(no, str(exc)) from None
        family = _family_of(name, types)
        seen_names.add(family)
        t = types.get(family)
        rest = (s[i + 1 :] if i >= 0 else s[len(key) :]).split()
        try:
            value = parse_float(rest[0])
        except (ValueError, IndexError):
            continue
        d = dict(pairs)
        if t == "summary" and name == family and "quantile" in d:
            _strict_float(d["quantile"], "quantile", no)
        if t == "histogram" and name == family + "_bucket":
            _strict_float(d.get("le", ""), "le", no)
            if value < 0:
                raise ParseError(no, f'negative bucket population for histogram "{family}"')
        if t in ("histogram", "summary") and name == family + "_count" and value < 0:
            raise ParseError(no, f'negative count for {t} "{family}"')


def _strict_float(v: str, label: str, no: int) -> None:
    try:
        parse_float(v.encode())
    except ValueError:
        raise ParseError(no, f"expected float as value for '{label}' label") from None


def _family_of(name: str, types: dict[str, str]) -> str:
    for suffix in ("_bucket", "_count", "_sum"):
        if name.endswith(suffix) and types.get(name[: -len(suffix)]) in ("histogram", "summary"):
            return name[: -len(suffix)]
    return name
