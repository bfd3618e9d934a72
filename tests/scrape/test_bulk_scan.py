"""The bulk text scan gives exactly what the careful line-by-line scan gives, on hits and misses alike.

``scan_text`` splits lines at their last space and looks series up in bulk;
``_scan_text_careful`` is the reference. Random bodies mix cached and new
series with the spellings that could fool a split at the last space: tabs,
runs of spaces, carriage returns, timestamps, braces and spaces inside label
values, comments with leading blanks, blank lines, bad values.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.scrape.textparse import (
    ParseError,
    ScanState,
    _scan_text_careful,
    labels_of,
    parse_series,
    scan_text,
)

SERIES = [
    b"up",
    b'a{x="1"}',
    b'b{x="y z",k="}"}',
    b' c{x="1"}',
    b'd{x="1 2"}',
    b"e_total",
    b'f{le="+Inf"}',
]
SEPS = [b" ", b"  ", b"\t", b" \t"]
VALUES = [b"1", b"-2.5", b"NaN", b"nan", b"+Inf", b"1e3", b"1_0", b"x", b"", b"1}"]
TAILS = [b"", b" 1700000000000", b"\t17", b" ", b"\r", b" 1 2", b" -5"]
OTHER = [b"", b"# HELP a Things.", b"# TYPE a counter", b"  # indented comment", b"#", b"   ", b'g{x="1"', b"{}"]

line = st.one_of(
    st.builds(lambda k, s, v, t: k + s + v + t, st.sampled_from(SERIES), st.sampled_from(SEPS),
              st.sampled_from(VALUES), st.sampled_from(TAILS)),
    st.sampled_from(OTHER),
)


def _state(cache: dict) -> ScanState:
    def resolve(key: bytes):  # noqa: ANN202
        name, pairs = parse_series(key)
        lab = labels_of(name, pairs)
        cache[key] = lab
        return lab

    return ScanState(cache=cache, resolve=resolve, comments={})


def _run(scan, lines: list[bytes], cache: dict) -> tuple:  # noqa: ANN001
    s = _state(cache)
    s.lineno = 7
    try:
        scan(lines, s)
    except ParseError as exc:
        return ("error", str(exc))
    return (s.keys, s.labels, [repr(v) for v in s.values], s.explicit, s.meta_items, s.lineno)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(line, max_size=12), st.lists(line, max_size=12), st.booleans())
def test_bulk_scan_equals_careful_scan(warm: list[bytes], lines: list[bytes], drop_c: bool) -> None:
    cache: dict = {}
    _run(_scan_text_careful, warm, cache)  # some series are known (hits), others are not
    if drop_c:
        cache[b' c{x="1"}'] = ()  # a series dropped by relabeling
    want = _run(_scan_text_careful, lines, dict(cache))
    got = _run(scan_text, lines, dict(cache))
    assert got == want


def test_hits_take_the_bulk_path_and_keep_the_careful_results() -> None:
    cache: dict = {}
    body = [b"# TYPE a counter", b'a{x="1"} 3', b"up 1", b"", b'a{x="2"} 4 1700000000000']
    _run(_scan_text_careful, body, cache)
    calls: list[bytes] = []
    s = _state(cache)
    real = s.resolve
    s.resolve = lambda k: calls.append(k) or real(k)  # type: ignore[assignment, func-returns-value]
    scan_text(body, s)
    assert calls == []  # every series came from the cache
    assert s.values == [3.0, 1.0, 4.0]
    assert s.explicit == [(2, 1_700_000_000_000, b'a{x="2"}')]
    assert s.meta_items == [("TYPE", "a", "counter")]
    assert s.lineno == 5
