"""The text format parser: unit cases and every text case of the exposition conformance data."""

from __future__ import annotations

import base64
import json
import math

import pytest

from agent import labels as L
from agent.scrape import textparse
from agent.scrape.textparse import ParseError, parse_text
from tests.conftest import CONFORMANCE

EXPO = CONFORMANCE / "exposition"
PROMPARSE = json.loads((EXPO / "prometheus-textparse" / "promparse_errors.json").read_text())
EXPFMT = json.loads((EXPO / "prometheus-common-expfmt" / "text_parse_errors.json").read_text())
VALID_FILES = [
    EXPO / "prometheus-textparse" / "alltypes.237mfs.prom.txt",
    EXPO / "prometheus-textparse" / "alltypes.237mfs.nometa.prom.txt",
    EXPO / "prometheus-textparse" / "promtestdata.txt",
    EXPO / "prometheus-common-expfmt" / "text",
    CONFORMANCE / "payloads" / "node_exporter_linux_e2e-output.txt",
    *sorted((EXPO / "prometheus-common-expfmt" / "fuzz-corpus-valid").iterdir()),
]
INVALID_FILES = sorted((EXPO / "prometheus-common-expfmt" / "fuzz-corpus-invalid").iterdir())


def one(text: str) -> tuple[tuple, float, int | None]:
    e = parse_text(text.encode())
    assert len(e.samples) == 1
    s = e.samples[0]
    return s.labels, s.value, s.timestamp_ms


def test_labels_escapes_and_whitespace() -> None:
    labels, v, ts = one('m {a="x\\"y\\\\z\\n", b = "}{ 1 2" ,} 3.5 -12\n')
    assert labels == L.from_dict({"__name__": "m", "a": 'x"y\\z\n', "b": "}{ 1 2"})
    assert v == 3.5 and ts == -12


def test_unknown_escape_kept_verbatim_like_prometheus() -> None:
    labels, _, _ = one('m{a="x\\ty"} 1')
    assert L.get(labels, "a") == "x\\ty"


def test_special_values_and_no_final_newline() -> None:
    e = parse_text(b"a NaN\nb +Inf\nc -Inf\nd -0.5e3\ne .5")
    vals = [s.value for s in e.samples]
    assert math.isnan(vals[0]) and vals[1:] == [math.inf, -math.inf, -500.0, 0.5]


def test_comments_help_type_and_metadata() -> None:
    e = parse_text(
        b"# just a comment\n#\n# HELP a Some \\\\ help\\n more.\n# TYPE a counter\n"
        b"# TYPE u untyped\na 1\n  # TYPE g gauge\ng 2\n"
    )
    md = e.metadata
    assert md["a"].type == "counter" and md["a"].help == "Some \\ help\n more."
    assert md["u"].type == "unknown" and md["g"].type == "gauge"


def test_empty_label_value_removed_and_utf8_names() -> None:
    labels, _, _ = one('{"my.metric", "a.b"="c", d=""} 1\n')
    assert labels == (("__name__", "my.metric"), ("a.b", "c"))


def test_duplicate_series_are_both_returned_by_parser() -> None:
    e = parse_text(b"a 1\na 2\n")
    assert [s.value for s in e.samples] == [1.0, 2.0]


@pytest.mark.parametrize(
    "body,line,reason",
    [
        (b"a 1\nb\n", 2, "expected value after metric"),
        (b'a{b="c" 1\n', 1, "expected ',' or '}'"),
        (b"a 1 2 3\n", 1, "after timestamp"),
        (b"a 1_0\n", 1, "unsupported character"),
        (b"a 1 1.5\n", 1, "invalid timestamp"),
        (b"a 1 99999999999999999999\n", 1, "out of range"),
        (b"# TYPE a bogus\n", 1, "invalid metric type"),
        (b'a{x="1",x="2"} 1\n', 1, "not unique"),
        (b"a +nan\n", 1, "invalid float"),
        (b'a{b="\xff"} 1\n', 1, "invalid UTF-8"),
        (b"ok 1\n\n\n{} 1\n", 4, "metric name not set"),
    ],
)
def test_invalid_lines_name_line_and_reason(body: bytes, line: int, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_text(body)
    assert info.value.line == line
    assert reason in info.value.reason


@pytest.mark.parametrize(
    "case",
    PROMPARSE["parse_errors"] + PROMPARSE["null_byte_handling"],
    ids=lambda c: f"promparse-{c['index']}",
)
def test_promparse_cases(case: dict) -> None:
    body = base64.b64decode(case["input"]["base64"])
    if case["valid"]:
        parse_text(body)
    else:
        with pytest.raises(ParseError):
            parse_text(body)


@pytest.mark.parametrize("case", EXPFMT["cases"], ids=lambda c: f"expfmt-{c['index']}")
def test_expfmt_cases_strict(case: dict) -> None:
    body = base64.b64decode(case["input"]["base64"])
    exp = case["expect_utf8_validation"]
    if exp["valid"]:
        parse_text(body, strict=True)
        return
    with pytest.raises(ParseError) as info:
        parse_text(body, strict=True)
    want_line = int(exp["error_prefix"].split("line ")[1].split(":")[0])
    # Our line numbers agree with client_golang's except where the Go parser
    # reports a quoted name's raw newline on the line it started.
    if "unescaped new-line" not in exp["error_prefix"]:
        assert info.value.line == want_line


@pytest.mark.parametrize("path", VALID_FILES, ids=lambda p: p.name)
def test_valid_files_parse_lenient_and_strict(path) -> None:
    body = path.read_bytes()
    lenient = parse_text(body)
    strict = parse_text(body, strict=True)
    assert [s.labels for s in strict.samples] == [s.labels for s in lenient.samples]
    sample_lines = [
        ln for ln in body.split(b"\n") if ln.strip() and not ln.strip().startswith(b"#")
    ]
    assert len(lenient.samples) == len(sample_lines)


def test_node_exporter_payload_families() -> None:
    e = parse_text((CONFORMANCE / "payloads" / "node_exporter_linux_e2e-output.txt").read_bytes())
    assert len(e.samples) == 3027
    assert e.metadata["node_cpu_seconds_total"].type == "counter"
    names = {L.get(s.labels, "__name__") for s in e.samples}
    assert "node_cpu_seconds_total" in names


@pytest.mark.parametrize("path", INVALID_FILES, ids=lambda p: p.name)
def test_invalid_fuzz_corpus_rejected_strict(path) -> None:
    with pytest.raises(ParseError):
        parse_text(path.read_bytes(), strict=True)


def test_gzip_fixture_matches_plain() -> None:
    import gzip

    d = EXPO / "prometheus-common-expfmt"
    assert gzip.decompress((d / "text.gz").read_bytes()) == (d / "text").read_bytes()


def test_value_memo_keeps_values_exact_bounded_and_checked() -> None:
    # Enough chunks that the memo of recurring value tokens is filled, cleared and refilled:
    # every value still comes out exactly as float() reads its token.
    for i in range(200):
        body = b"".join(b'm{i="%d"} %d\n' % (j, i * 50 + j) for j in range(50))
        got = [s.value for s in parse_text(body).samples]
        assert got == [float(i * 50 + j) for j in range(50)]
    assert 0 < len(textparse._MEMO) <= textparse._MEMO_MAX + 50
    # A token the memo holds is still checked: Prometheus rejects '_' and text, float() does not.
    parse_text(b"a 10\n" * 20)
    with pytest.raises(ParseError) as exc:
        parse_text(b"a 10\nb 1_0\n")
    assert exc.value.line == 2
    with pytest.raises(ParseError):
        parse_text(b"a 10\nb nan1\n")
