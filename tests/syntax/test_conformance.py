"""Alloy's own parser and printer test data, walked as its README describes.

Every file that must parse does; every invalid file gets exactly the errors
its ``/* ERROR "rx" */`` markers state, at the marked tokens; every printer
case prints byte for byte; and every file survives parse -> format -> parse
unchanged, with formatting idempotent.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.syntax import ast
from agent.syntax.diag import DiagnosticsError
from agent.syntax.parser import parse_file
from agent.syntax.printer import format_file
from agent.syntax.scanner import scan
from agent.syntax.token import NAMES, Tok
from tests.conftest import CONFORMANCE

SYNTAX = CONFORMANCE / "alloy-syntax"
PRINTER = SYNTAX / "printer"


def _must_parse() -> list[Path]:
    files = sorted((SYNTAX / "parser" / "valid").glob("*.alloy"))
    files += sorted(p for p in PRINTER.glob("*.in") if p.stem != "raw_string_label_error")
    files += sorted((SYNTAX / "examples").glob("*.alloy"))
    files += sorted((SYNTAX / "k8s-monitoring-helm").glob("*/*.alloy"))
    files += sorted((SYNTAX / "prometheus-convert").glob("*.alloy"))
    return files


MUST_PARSE = _must_parse()
INVALID = sorted((SYNTAX / "parser").glob("*.alloy"))
PRINTER_CASES = sorted(p.stem for p in PRINTER.glob("*.expect"))


def _id(path: Path) -> str:
    return str(path.relative_to(SYNTAX))


def test_the_corpus_is_there() -> None:
    # The README lists these; a missing folder must fail loudly, not skip.
    assert len(MUST_PARSE) >= 5 + 9 + 5 + 4 + 27
    assert len(INVALID) == 6
    assert len(PRINTER_CASES) == 9


@pytest.mark.parametrize("path", MUST_PARSE, ids=_id)
def test_must_parse(path: Path) -> None:
    f = parse_file(path.read_bytes(), str(path))
    assert f.name == str(path)


@pytest.mark.parametrize("path", MUST_PARSE, ids=_id)
def test_round_trip_and_idempotent(path: Path) -> None:
    original = parse_file(path.read_bytes(), str(path))
    once = format_file(original)
    reparsed = parse_file(once, str(path))
    assert reparsed == original
    assert format_file(reparsed) == once
    # Comments survive too, in order.
    assert [c.text for g in reparsed.comments for c in g] == [
        c.text for g in original.comments for c in g
    ]


_ERROR_MARKER = re.compile(r'^/\* *ERROR *(HERE)? *"([^"]*)" *\*/$')
_LITERAL_TOKENS = {Tok.IDENT, Tok.NUMBER, Tok.FLOAT, Tok.STRING}


def _expected_errors(text: str) -> dict[int, str]:
    """Offset -> message regex, from the markers (upstream's test-harness convention)."""
    toks = scan(text)
    expected: dict[int, str] = {}
    prev = here = 0
    for kind, off, lit in zip(toks.kinds, toks.offsets, toks.lits, strict=True):
        if kind is Tok.COMMENT:
            m = _ERROR_MARKER.match(lit)
            if m:
                expected[here if m.group(1) else prev] = m.group(2)
        elif kind is not Tok.TERMINATOR and kind is not Tok.EOF:
            prev = off
            here = off + (len(lit) if kind in _LITERAL_TOKENS else len(NAMES[kind]))
    return expected


@pytest.mark.parametrize("path", INVALID, ids=_id)
def test_invalid_files_report_exactly_the_marked_errors(path: Path) -> None:
    text = path.read_text()
    expected = _expected_errors(text)
    assert expected, "an invalid file without markers would test nothing"
    with pytest.raises(DiagnosticsError) as info:
        parse_file(text, str(path))
    unexpected = []
    for diag in info.value.diagnostics:
        assert diag.pos.file == str(path)
        rx = expected.pop(diag.pos.offset, None)
        if rx is None or not re.search(rx, diag.message):
            unexpected.append((str(diag), rx))
    assert unexpected == []
    assert expected == {}, "expected errors not reported"


def test_invalid_file_messages_read_as_alloy_writes_them() -> None:
    path = SYNTAX / "parser" / "block_names.alloy"
    with pytest.raises(DiagnosticsError) as info:
        parse_file(path.read_text(), "block_names.alloy")
    assert [str(d) for d in info.value.diagnostics] == [
        "block_names.alloy:9:15: expected block label, got IDENT",
        'block_names.alloy:23:15: expected block label to be a valid identifier, but got "with space"',
    ]


@pytest.mark.parametrize("case", PRINTER_CASES)
def test_printer_case(case: str) -> None:
    source = (PRINTER / f"{case}.in").read_text()
    expect = (PRINTER / f"{case}.expect").read_text()
    got = format_file(parse_file(source, f"{case}.in"))
    # Upstream compares against the .expect with trailing whitespace trimmed
    # (some .expect files end without a newline, one with a blank line);
    # shoal fmt, like alloy fmt, ends the file with exactly one newline.
    assert got == expect.rstrip() + "\n"


def test_raw_string_label_is_rejected() -> None:
    want = (PRINTER / "raw_string_label_error.error").read_text().strip()
    with pytest.raises(DiagnosticsError) as info:
        parse_file((PRINTER / "raw_string_label_error.in").read_text())
    assert want in str(info.value)
    # Both raw labels (lines 5 and 13) are reported, not just the first.
    assert [d.pos.line for d in info.value.diagnostics] == [5, 13]


def test_converter_output_is_already_canonical() -> None:
    # Alloy's converter writes its output through Alloy's printer, so these
    # 27 files are a second, larger set of expected formatter outputs.
    files = sorted((SYNTAX / "prometheus-convert").glob("*.alloy"))
    assert len(files) >= 27
    for path in files:
        text = path.read_text()
        assert format_file(parse_file(text)) == text, path.name


def test_references_in_helm_output_parse_as_access_and_index() -> None:
    path = SYNTAX / "k8s-monitoring-helm" / "auth_bearer-token" / "alloy-metrics.alloy"
    f = parse_file(path.read_text())

    def attrs(body: list[ast.Stmt]) -> list[ast.Attribute]:
        out: list[ast.Attribute] = []
        for s in body:
            if isinstance(s, ast.Attribute):
                out.append(s)
            else:
                out.extend(attrs(s.body))
        return out

    bearer = next(a for a in attrs(f.body) if a.name.name == "bearer_token")
    assert isinstance(bearer.value, ast.IndexExpr)
    assert bearer.value.index == ast.Literal(ast.LitKind.STRING, '"bearerToken"')
    chain = []
    node = bearer.value.value
    while isinstance(node, ast.AccessExpr):
        chain.append(node.name.name)
        node = node.value
    assert isinstance(node, ast.IdentExpr)
    assert [node.ident.name, *reversed(chain)] == [
        "remote",
        "kubernetes",
        "secret",
        "prometheus",
        "data",
    ]
