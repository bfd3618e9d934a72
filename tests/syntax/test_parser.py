"""The parser: tree shapes, precedence, positions, every error message and recovery."""

from __future__ import annotations

import pytest

from agent.syntax import ast
from agent.syntax.ast import BinOp, LitKind, UnOp
from agent.syntax.diag import DiagnosticsError
from agent.syntax.parser import parse_expression, parse_file


def num(v: str) -> ast.Literal:
    return ast.Literal(LitKind.NUMBER, v)


def ident(name: str) -> ast.IdentExpr:
    return ast.IdentExpr(ast.Ident(name))


def bin_(op: BinOp, left: ast.Expr, right: ast.Expr) -> ast.BinaryExpr:
    return ast.BinaryExpr(op, left, right)


def errors_of(source: str | bytes) -> list[str]:
    with pytest.raises(DiagnosticsError) as info:
        parse_file(source, "t.alloy")
    return [str(d) for d in info.value.diagnostics]


# ---- statements --------------------------------------------------------------


def test_blocks_attributes_and_labels() -> None:
    f = parse_file(
        'logging {\n  level = "info"\n}\nprometheus.scrape "pods" {\n  clustering { enabled = true }\n}\n',
        "c.alloy",
    )
    logging, scrape = f.body
    assert isinstance(logging, ast.Block) and isinstance(scrape, ast.Block)
    assert logging.name == ["logging"] and logging.label is None
    assert logging.body == [
        ast.Attribute(ast.Ident("level"), ast.Literal(LitKind.STRING, '"info"'))
    ]
    assert scrape.name == ["prometheus", "scrape"] and scrape.label == "pods"
    assert scrape.id == "prometheus.scrape.pods"
    inner = scrape.body[0]
    assert isinstance(inner, ast.Block) and inner.name == ["clustering"]
    assert inner.body == [ast.Attribute(ast.Ident("enabled"), ast.Literal(LitKind.BOOL, "true"))]


def test_positions_are_recorded() -> None:
    f = parse_file('a = 1\nblk "l" {\n  x = [1]\n}\n', "p.alloy")
    attr, blk = f.body
    assert isinstance(attr, ast.Attribute) and isinstance(blk, ast.Block)
    assert str(attr.pos) == "p.alloy:1:1"
    assert str(attr.value.pos) == "p.alloy:1:5"
    assert str(blk.pos) == "p.alloy:2:1"
    assert str(blk.label_pos) == "p.alloy:2:5"
    assert str(blk.lcurly) == "p.alloy:2:9"
    assert str(blk.rcurly) == "p.alloy:4:1"
    x = blk.body[0]
    assert isinstance(x, ast.Attribute) and isinstance(x.value, ast.ArrayExpr)
    assert (x.value.pos.line, x.value.pos.col, x.value.end.col) == (3, 7, 9)
    assert x.value.pos.offset == 22


def test_empty_file_and_comments_only() -> None:
    assert parse_file("").body == []
    f = parse_file("// one\n// two\n\n/* three */\n")
    assert f.body == []
    assert [[c.text for c in g] for g in f.comments] == [["// one", "// two"], ["/* three */"]]


def test_bytes_input_and_bom() -> None:
    assert parse_file(b"\xef\xbb\xbfa = 1\n").body == [ast.Attribute(ast.Ident("a"), num("1"))]


def test_empty_label_is_no_label() -> None:
    blk = parse_file('b "" {}').body[0]
    assert isinstance(blk, ast.Block) and blk.label is None


# ---- expressions -------------------------------------------------------------


def test_precedence_levels() -> None:
    e = parse_expression("a || b && c == d + e * f ^ g")
    assert e == bin_(
        BinOp.OR,
        ident("a"),
        bin_(
            BinOp.AND,
            ident("b"),
            bin_(
                BinOp.EQ,
                ident("c"),
                bin_(
                    BinOp.ADD,
                    ident("d"),
                    bin_(BinOp.MUL, ident("e"), bin_(BinOp.POW, ident("f"), ident("g"))),
                ),
            ),
        ),
    )


def test_left_associative_operators() -> None:
    assert parse_expression("1 - 2 - 3") == bin_(
        BinOp.SUB, bin_(BinOp.SUB, num("1"), num("2")), num("3")
    )
    assert parse_expression("8 / 4 % 3") == bin_(
        BinOp.MOD, bin_(BinOp.DIV, num("8"), num("4")), num("3")
    )
    assert parse_expression("1 < 2 == true") == bin_(
        BinOp.EQ, bin_(BinOp.LT, num("1"), num("2")), ast.Literal(LitKind.BOOL, "true")
    )


def test_power_is_right_associative_and_binds_tighter_than_unary_operand() -> None:
    assert parse_expression("2 ^ 3 ^ 2") == bin_(
        BinOp.POW, num("2"), bin_(BinOp.POW, num("3"), num("2"))
    )
    # unary binds to its operand first: (-2) ^ 2, as in Alloy
    assert parse_expression("-2 ^ 2") == bin_(
        BinOp.POW, ast.UnaryExpr(UnOp.NEG, num("2")), num("2")
    )
    assert parse_expression("!!x") == ast.UnaryExpr(UnOp.NOT, ast.UnaryExpr(UnOp.NOT, ident("x")))


def test_every_comparison_operator() -> None:
    for op in ("==", "!=", "<", "<=", ">", ">="):
        assert parse_expression(f"1 {op} 2") == bin_(BinOp(op), num("1"), num("2"))


def test_parens_are_kept() -> None:
    assert parse_expression("(1 + 2) * 3") == bin_(
        BinOp.MUL, ast.ParenExpr(bin_(BinOp.ADD, num("1"), num("2"))), num("3")
    )


def test_postfix_access_index_call() -> None:
    e = parse_expression('discovery.kubernetes.nodes.targets[0]["k"]')
    assert isinstance(e, ast.IndexExpr) and e.index == ast.Literal(LitKind.STRING, '"k"')
    inner = e.value
    assert isinstance(inner, ast.IndexExpr) and inner.index == num("0")
    assert ast.start_pos(e).col == 1

    call = parse_expression('string.format("%s-%d", x, 1,)')
    assert isinstance(call, ast.CallExpr)
    assert call.value == ast.AccessExpr(ident("string"), ast.Ident("format"))
    assert call.args == [ast.Literal(LitKind.STRING, '"%s-%d"'), ident("x"), num("1")]
    assert parse_expression("f()") == ast.CallExpr(ident("f"), [])
    assert parse_expression("(a.b)(1).c") == ast.AccessExpr(
        ast.CallExpr(ast.ParenExpr(ast.AccessExpr(ident("a"), ast.Ident("b"))), [num("1")]),
        ast.Ident("c"),
    )


def test_arrays_and_objects() -> None:
    assert parse_expression("[]") == ast.ArrayExpr([])
    assert parse_expression("[1, [2],]") == ast.ArrayExpr([num("1"), ast.ArrayExpr([num("2")])])
    obj = parse_expression('{ a = 1, "b.c/d" = 2, }')
    assert obj == ast.ObjectExpr(
        [ast.ObjectField("a", False, num("1")), ast.ObjectField("b.c/d", True, num("2"))]
    )
    assert parse_expression("{}") == ast.ObjectExpr([])
    multi = parse_expression('{\n  a = 1,\n  "b" = [\n    1,\n  ],\n}')
    assert isinstance(multi, ast.ObjectExpr) and [f.name for f in multi.fields] == ["a", "b"]


def test_literals_keep_their_source_text() -> None:
    assert parse_expression("1e3") == ast.Literal(LitKind.FLOAT, "1e3")
    assert parse_expression(".5") == ast.Literal(LitKind.FLOAT, ".5")
    assert parse_expression('"a\\tb"') == ast.Literal(LitKind.STRING, '"a\\tb"')
    assert parse_expression("`raw\\n`") == ast.Literal(LitKind.STRING, "`raw\\n`")
    assert parse_expression("null") == ast.Literal(LitKind.NULL, "null")


def test_parse_expression_rejects_leftovers() -> None:
    with pytest.raises(DiagnosticsError, match="1:3: expected TERMINATOR, got NUMBER"):
        parse_expression("1 2")
    with pytest.raises(DiagnosticsError, match="expected EOF, got NUMBER"):
        parse_expression("1\n2")


# ---- errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, message",
    [
        ("a = 1 +", "t.alloy:1:8: expected expression, got EOF"),
        ("a = 1 + )", "t.alloy:1:9: expected expression, got )"),
        ("a = 1 + + 2", "t.alloy:1:9: expected expression, got +"),
        ("a = (1", "t.alloy:1:7: expected ), got TERMINATOR"),
        ("a = [1, 2", "t.alloy:1:10: missing ',' in expression list"),
        ("a = [1, 2,", "t.alloy:1:11: expected ], got EOF"),
        ("a = [\n1,\n2\n]", "t.alloy:3:2: missing ',' in expression list"),
        ("a = {\nb = 1\n}", "t.alloy:2:6: missing ',' in field list"),
        ("a = { 1 = 2 }", "t.alloy:1:7: expected field name (string or identifier), got NUMBER"),
        ("a = x.true", "t.alloy:1:7: expected IDENT, got BOOL"),
        (
            "a.b = 1",
            't.alloy:1:1: attribute names may only consist of a single identifier with no "."',
        ),
        ('a "l" = 1', "t.alloy:1:3: attribute names may not have labels"),
        ("blk lbl {}", "t.alloy:1:5: expected block label, got IDENT"),
        (
            'blk "not valid" {}',
            't.alloy:1:5: expected block label to be a valid identifier, but got "not valid"',
        ),
        (
            "blk `raw` {}",
            't.alloy:1:5: expected block label to be a double quoted string, but got "`raw`"',
        ),
        ("a.b", "t.alloy:1:4: expected block label, got TERMINATOR"),
        ('a "l" 1', "t.alloy:1:7: expected block body, got NUMBER"),
        ("1 = 2", "t.alloy:1:1: expected identifier, got NUMBER"),
        ("a. = 1", "t.alloy:1:4: expected identifier, got ="),
        ("blk {\n  a = 1", "t.alloy:2:8: expected }, got EOF"),
        ("a = 1 b = 2", "t.alloy:1:7: expected TERMINATOR, got IDENT"),
        ('x = a.b "l" {\n  y = 1\n}', "t.alloy:1:5: cannot use a block as an expression"),
        ('x = a.b "l" "m" 1', "t.alloy:1:13: expected {, got STRING"),
        ('a = "x\\q"', "t.alloy:1:8: unknown escape sequence"),
        ('a = "x', "t.alloy:1:5: string literal not terminated"),
        ("a = 1 @", "t.alloy:1:7: illegal character U+0040 '@'"),
        ("a = 1\n/* open", "t.alloy:2:1: block comment not terminated"),
    ],
)
def test_error_messages(source: str, message: str) -> None:
    assert message in errors_of(source)


def test_errors_from_several_statements_are_all_reported() -> None:
    got = errors_of("a = (1 2)\nb = [1 2]\nc = {\n  d = 1 e = 2\n}\nok = 1\nblk {\n  x = 1 +\n}\n")
    assert got == [
        "t.alloy:1:8: expected ), got NUMBER",
        "t.alloy:2:8: missing ',' in expression list",
        "t.alloy:4:9: missing ',' in field list",
        "t.alloy:9:1: expected expression, got }",
    ]


def test_one_parser_error_per_line() -> None:
    # Alloy reports the first parser error on a line and drops the follow-ups.
    assert errors_of("a = ) ) )") == ["t.alloy:1:5: expected expression, got )"]


def test_scanner_and_parser_errors_together_in_source_order() -> None:
    got = errors_of('y = 1 + )\nx = "a\\q"\n')
    assert got == [
        "t.alloy:1:9: expected expression, got )",
        "t.alloy:2:8: unknown escape sequence",
    ]


def test_undecodable_bytes_are_a_positioned_error() -> None:
    assert errors_of(b'a = "ok"\nb = "\xff"\n') == ["t.alloy:2:6: illegal UTF-8 encoding"]
    assert errors_of(b"a = 1\x00") == [
        "t.alloy:1:6: illegal character NUL",
        "t.alloy:1:6: expected TERMINATOR, got ILLEGAL",
    ]


def test_deep_nesting_does_not_crash() -> None:
    depth = 150
    e = parse_expression("[" * depth + "]" * depth)
    for _ in range(depth - 1):
        assert isinstance(e, ast.ArrayExpr)
        e = e.elements[0]
    assert e == ast.ArrayExpr([])


def test_absurd_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(DiagnosticsError, match="expression is nested too deeply"):
        parse_file("x = " + "[" * 5000 + "]" * 5000)
    with pytest.raises(DiagnosticsError, match="nested too deeply"):
        parse_expression("(" * 5000 + "1" + ")" * 5000)
    with pytest.raises(DiagnosticsError, match="nested too deeply"):
        parse_file("a {\n" * 3000 + "}\n" * 3000)


def test_a_5000_line_config_parses() -> None:
    block = (
        'prometheus.scrape "job_{i}" {{\n'
        "  targets    = discovery.relabel.pods.output\n"
        "  forward_to = [prometheus.remote_write.default.receiver]\n"
        '  job_name   = "job_{i}" // trailing comment\n'
        '  scrape_interval = string.format("%ds", 10 * 2 + 1)\n'
        "  clustering {{\n"
        "    enabled = true\n"
        "  }}\n"
        "}}\n\n"
    )
    text = "".join(block.format(i=i) for i in range(500))
    assert text.count("\n") == 5000
    f = parse_file(text)
    assert len(f.body) == 500
    assert len(f.comments) == 500
