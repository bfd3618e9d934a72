"""Hostile and generated input: the front half never crashes, hangs, or loses meaning.

- Alloy's own fuzz corpus (Go ``testing.F`` files) and random bytes only ever
  raise DiagnosticsError.
- Token soups that happen to parse print and re-parse to the same tree.
- Generated expression trees print and re-parse to an equal tree.
- Conformance files with line breaks and comments inserted wherever Alloy
  allows them still format idempotently and keep their tree.
"""

from __future__ import annotations

import ast as pyast
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.syntax import ast
from agent.syntax.ast import PRECEDENCE, BinOp, LitKind, UnOp
from agent.syntax.diag import DiagnosticsError
from agent.syntax.parser import parse_expression, parse_file
from agent.syntax.printer import format_expr, format_file
from agent.syntax.scanner import scan
from agent.syntax.token import KEYWORDS, Tok
from tests.conftest import CONFORMANCE

SYNTAX = CONFORMANCE / "alloy-syntax"
FUZZ_CORPUS = sorted((SYNTAX / "parser" / "fuzz" / "FuzzParser").iterdir())
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _go_bytes_literal(text: str) -> bytes:
    """The input held by a Go fuzz corpus file: ``go test fuzz v1`` then ``[]byte("...")``."""
    lines = text.splitlines()
    assert lines[0] == "go test fuzz v1"
    m = re.fullmatch(r'\[\]byte\((".*")\)', lines[1])
    assert m, lines[1]
    # Go and Python agree on the escapes these files use (\" \\ \xNN \n \t ...).
    return pyast.literal_eval("b" + m.group(1))


def _parse_or_diagnose(data: bytes | str) -> ast.File | None:
    try:
        return parse_file(data, "fuzz.alloy")
    except DiagnosticsError as exc:
        assert exc.diagnostics, "an error without diagnostics says nothing"
        for d in exc.diagnostics:
            assert d.pos.valid and d.message
        return None


def _assert_round_trip(f: ast.File) -> None:
    out = format_file(f)
    again = parse_file(out, f.name)
    assert again == f
    assert format_file(again) == out


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", FUZZ_CORPUS, ids=lambda p: p.name[:12])
def test_go_fuzz_corpus(path: Path) -> None:
    data = _go_bytes_literal(path.read_text())
    f = _parse_or_diagnose(data)
    if f is not None:
        _assert_round_trip(f)


def test_fuzz_corpus_is_read() -> None:
    assert len(FUZZ_CORPUS) == 3
    assert _go_bytes_literal(FUZZ_CORPUS[1].read_text()) in {
        b"A0000000000000000",
        b'A={A!0A"',
        b'A"',
    }


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_diagnostics(data: bytes) -> None:
    f = _parse_or_diagnose(data)
    if f is not None:
        _assert_round_trip(f)


_SOUP = [
    "a", "b", "prometheus", "x_1", "é", ".", "=", "==", "!=", "<", "<=", ">", ">=", "{", "}",
    "[", "]", "(", ")", ",", '"s"', '"lbl"', '"a\\tb"', "`raw`", "`multi\nline`", "1", "2.5",
    "1e3", ".5", "true", "null", "+", "-", "*", "/", "%", "^", "!", "||", "&&", "/* c */",
    "\n", "\n\n", " ", "\t", "\r\n", '"\\q"', "'", "@", "&", "|", "/*", '"open', "`open",
    "\x00", "\ufeff", "1e", "// line\n",
]  # fmt: skip


@SETTINGS
@given(st.lists(st.sampled_from(_SOUP), max_size=60))
def test_token_soups_never_crash(parts: list[str]) -> None:
    f = _parse_or_diagnose("".join(parts))
    if f is not None:
        format_file(f)


@SETTINGS
@given(
    st.lists(st.sampled_from([p for p in _SOUP if "\n" not in p or p.strip() == ""]), max_size=60)
)
def test_token_soups_that_parse_round_trip(parts: list[str]) -> None:
    f = _parse_or_diagnose("".join(parts))
    if f is not None:
        _assert_round_trip(f)


# ---- generated expressions -----------------------------------------------------

_IDENT = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True).filter(lambda s: s not in KEYWORDS)
_STRING_BODY = st.from_regex(
    r'([a-zA-Z0-9 ./:_-]|\\[nt"\\]|\\x4[0-9]|\\u00e9){0,8}', fullmatch=True
)
_LEAF = st.one_of(
    st.from_regex(r"[0-9]{1,5}", fullmatch=True).map(lambda v: ast.Literal(LitKind.NUMBER, v)),
    st.sampled_from(["1.5", "1e3", ".5", "2.", "6.02e+23"]).map(
        lambda v: ast.Literal(LitKind.FLOAT, v)
    ),
    _STRING_BODY.map(lambda s: ast.Literal(LitKind.STRING, f'"{s}"')),
    st.from_regex(r"[a-z \n\t{}\"]{0,6}", fullmatch=True).map(
        lambda s: ast.Literal(LitKind.STRING, f"`{s}`")
    ),
    st.sampled_from(["true", "false"]).map(lambda v: ast.Literal(LitKind.BOOL, v)),
    st.just(ast.Literal(LitKind.NULL, "null")),
    _IDENT.map(lambda n: ast.IdentExpr(ast.Ident(n))),
)

_POSTFIX_OK = (
    ast.Literal, ast.IdentExpr, ast.ArrayExpr, ast.ObjectExpr, ast.AccessExpr,
    ast.IndexExpr, ast.CallExpr, ast.ParenExpr,
)  # fmt: skip


def _postfix_operand(e: ast.Expr) -> ast.Expr:
    return e if isinstance(e, _POSTFIX_OK) else ast.ParenExpr(e)


def _unary(op: UnOp, e: ast.Expr) -> ast.Expr:
    return ast.UnaryExpr(op, ast.ParenExpr(e) if isinstance(e, ast.BinaryExpr) else e)


def _binary(op: BinOp, left: ast.Expr, right: ast.Expr) -> ast.Expr:
    prec = PRECEDENCE[op]
    if isinstance(left, ast.BinaryExpr):
        lp = PRECEDENCE[left.op]
        if lp < prec or (lp == prec and op is BinOp.POW):
            left = ast.ParenExpr(left)
    if isinstance(right, ast.BinaryExpr):
        rp = PRECEDENCE[right.op]
        if rp < prec or (rp == prec and op is not BinOp.POW):
            right = ast.ParenExpr(right)
    return ast.BinaryExpr(op, left, right)


def _extend(children: st.SearchStrategy[ast.Expr]) -> st.SearchStrategy[ast.Expr]:
    key = st.one_of(
        _IDENT.map(lambda n: (n, False)),
        st.from_regex(r"[a-z0-9 ./_-]{1,8}", fullmatch=True).map(lambda n: (n, True)),
    )
    field = st.tuples(key, children).map(lambda t: ast.ObjectField(t[0][0], t[0][1], t[1]))
    return st.one_of(
        st.lists(children, max_size=4).map(ast.ArrayExpr),
        st.lists(field, max_size=4).map(ast.ObjectExpr),
        st.tuples(children, _IDENT).map(
            lambda t: ast.AccessExpr(_postfix_operand(t[0]), ast.Ident(t[1]))
        ),
        st.tuples(children, children).map(lambda t: ast.IndexExpr(_postfix_operand(t[0]), t[1])),
        st.tuples(children, st.lists(children, max_size=3)).map(
            lambda t: ast.CallExpr(_postfix_operand(t[0]), t[1])
        ),
        st.tuples(st.sampled_from(list(UnOp)), children).map(lambda t: _unary(*t)),
        st.tuples(st.sampled_from(list(BinOp)), children, children).map(lambda t: _binary(*t)),
        children.map(ast.ParenExpr),
    )


EXPRESSIONS = st.recursive(_LEAF, _extend, max_leaves=15)


@SETTINGS
@given(EXPRESSIONS)
def test_generated_expressions_print_and_reparse_equal(expr: ast.Expr) -> None:
    text = format_expr(expr)
    parsed = parse_expression(text)
    assert parsed == expr, text
    # Printed from a parsed tree (with positions), the text is a fixed point.
    canonical = format_expr(parsed)
    assert parse_expression(canonical) == expr
    assert format_expr(parse_expression(canonical)) == canonical


@SETTINGS
@given(st.lists(st.tuples(_IDENT, EXPRESSIONS), min_size=1, max_size=3), _IDENT)
def test_generated_files_round_trip(attrs: list[tuple[str, ast.Expr]], block: str) -> None:
    body: list[ast.Stmt] = [ast.Attribute(ast.Ident(n), e) for n, e in attrs]
    f = ast.File("gen.alloy", [*body, ast.Block([block, "inner"], "lbl", list(body))])
    # A built tree has no positions, so it prints as if written on one line;
    # from the parsed output on, formatting must be a fixed point.
    again = parse_file(format_file(f), "gen.alloy")
    assert again == f
    _assert_round_trip(again)


# ---- conformance files reshaped ---------------------------------------------------

_CORPUS = sorted(
    [*(SYNTAX / "examples").glob("*.alloy"), *(SYNTAX / "k8s-monitoring-helm").glob("*/*.alloy")]
    + sorted((SYNTAX / "prometheus-convert").glob("*.alloy"))
    + [p for p in (SYNTAX / "printer").glob("*.in") if p.stem != "raw_string_label_error"]
)
# After these tokens a newline is only whitespace, so one may be added there.
_BREAKABLE = {
    Tok.COMMA, Tok.LPAREN, Tok.LBRACK, Tok.LCURLY, Tok.ASSIGN, Tok.ADD, Tok.SUB, Tok.MUL,
    Tok.OR, Tok.AND, Tok.EQ,
}  # fmt: skip
_INSERTS = ["\n", "\n\n", " /* c */\n", "\n// x\n", "\n/* two\nlines */\n", " /* b */ "]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(_CORPUS), st.data())
def test_reshaped_conformance_files_format_idempotently(path: Path, data: st.DataObject) -> None:
    src = path.read_text()
    toks = scan(src)
    spots = [
        off + len(lit)
        for kind, off, lit in zip(toks.kinds, toks.offsets, toks.lits, strict=True)
        if kind in _BREAKABLE
    ]
    chosen = data.draw(st.lists(st.sampled_from(spots), min_size=1, max_size=8, unique=True))
    for off in sorted(chosen, reverse=True):
        src = src[:off] + data.draw(st.sampled_from(_INSERTS)) + src[off:]
    f = parse_file(src, str(path))
    _assert_round_trip(f)
