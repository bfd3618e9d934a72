from __future__ import annotations

import math
from typing import Any

import pytest

from agent.syntax import ast
from agent.syntax.ast import BinOp, LitKind
from agent.syntax.diag import DiagnosticsError, Pos
from agent.syntax.parser import parse_expression
from agent.syntax.value import Function, Secret
from agent.syntax.vm import Scope, evaluate, references


def ev(src: str, **variables: Any) -> Any:
    return evaluate(parse_expression(src, "t.alloy"), Scope(variables))


def err(src: str, **variables: Any) -> tuple[str, int, int]:
    with pytest.raises(DiagnosticsError) as exc:
        ev(src, **variables)
    (d,) = exc.value.diagnostics
    return d.message, d.pos.line, d.pos.col


def same(a: Any, b: Any) -> bool:
    """Equal with the same Python types all the way down (1 is not 1.0 here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


# ---- literals --------------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "value"),
    [
        ("10", 10),
        ("0", 0),
        ("017", 15),  # Go's ParseInt with base 0: a leading zero is octal
        ("08", 8.0),  # ...and what fits no integer is a float
        ("18446744073709551615", 2**64 - 1),
        ("18446744073709551616", 1.8446744073709552e19),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        (".5", 0.5),
        ("true", True),
        ("false", False),
        ("null", None),
        ('"a\\tb"', "a\tb"),
        ("`a\\tb`", "a\\tb"),
        ("[]", []),
        ("[1, [2, 3], {}]", [1, [2, 3], {}]),
        ('{a = 1, "b c" = "x", d = [true]}', {"a": 1, "b c": "x", "d": [True]}),
    ],
)
def test_literals(src, value):
    assert same(ev(src), value)


def test_hand_built_literals_evaluate_without_the_parser():
    scope = Scope({})
    assert evaluate(ast.Literal(LitKind.FLOAT, "1e3"), scope) == 1000.0
    assert evaluate(ast.Literal(LitKind.STRING, '"\\x41"'), scope) == "A"
    e = ast.BinaryExpr(
        BinOp.ADD, ast.Literal(LitKind.NUMBER, "1"), ast.Literal(LitKind.NUMBER, "2")
    )
    assert evaluate(e, scope) == 3


def test_a_bad_hand_built_literal_is_a_positioned_error():
    with pytest.raises(DiagnosticsError) as exc:
        evaluate(ast.Literal(LitKind.STRING, '"\\q"', Pos("f", 3, 4)), Scope())
    assert exc.value.diagnostics[0].pos == Pos("f", 3, 4)
    assert "unknown escape" in exc.value.diagnostics[0].message


# ---- arithmetic ------------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "value"),
    [
        ("1 + 2", 3),
        ("1 + 2.5", 3.5),
        ("1.5 + 1.5", 3.0),
        ("5 - 7", -2),
        ("3 * 4", 12),
        ("3 * 0.5", 1.5),
        ("7 / 2", 3),  # integers stay integers; Go truncates
        ("-7 / 2", -3),
        ("7 / -2", -3),
        ("7.0 / 2", 3.5),
        ("7 % 3", 1),
        ("-7 % 3", -1),  # Go: the sign of the dividend
        ("7 % -3", 1),
        ("7.5 % 2", 1.5),
        ("-7.5 % 2", -1.5),
        ("2 ^ 10", 1024),
        ("2 ^ 3 ^ 2", 512),  # right-associative
        ("(2 ^ 3) ^ 2", 64),
        ("2.0 ^ 0.5", math.sqrt(2)),
        ("2 ^ -1", 0.5),
        ("0 ^ 0", 1),
        ("-2 ^ 3", -8),
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 4 - 3", 3),
        ("100 / 10 / 5", 2),
        ("-(3)", -3),
        ("-1.5", -1.5),
        ("--2", 2),
        ('"a" + "b"', "ab"),
        ('"" + ""', ""),
        ("9223372036854775807 + 1", 9223372036854775808),
    ],
)
def test_arithmetic(src, value):
    assert same(ev(src), value)


def test_float_edge_results_follow_go():
    assert ev("1e308 * 10") == math.inf
    assert math.isnan(ev("(-8.0) ^ 0.5"))
    assert ev("0.0 ^ -1.0") == math.inf


@pytest.mark.parametrize(
    ("src", "message", "col"),
    [
        ('"a" + 1', "cannot add string and number: expected string, got number", 7),
        ('1 + "a"', "cannot add number and string: expected number, got string", 5),
        (
            "[1] + [2]",
            "cannot add array and array: expected number, string or secret, got array",
            1,
        ),
        ("1 + null", "cannot add number and null: expected number, string or secret, got null", 5),
        ('"a" - "b"', "cannot subtract string and string: expected number, got string", 1),
        ("1 * true", "cannot multiply number and bool: expected number, got bool", 5),
        ("{} / 1", "cannot divide object and number: expected number, got object", 1),
        (
            '1 % "x"',
            "cannot take the remainder of number and string: expected number, got string",
            5,
        ),
        ('"2" ^ 2', "cannot raise string and number: expected number, got string", 1),
        ("1 / 0", "division by zero", 5),
        ("1.5 / 0.0", "division by zero", 7),
        ("1 % 0", "division by zero", 5),
        ('-"a"', "operator - expects a number: expected number, got string", 2),
        ("!1", "operator ! expects a bool: expected bool, got number", 2),
        ("2 ^ 64", "integer overflow", 1),
        ("18446744073709551615 + 1", "integer overflow", 1),
        ("-9223372036854775807 - 2", "integer overflow", 1),
        ("10 ^ 100000000", "integer overflow", 1),
    ],
)
def test_arithmetic_type_errors_are_positioned(src, message, col):
    assert err(src) == (message, 1, col)


def test_secret_plus_string_is_a_secret():
    for src in ['s + "x"', '"x" + s', "s + s"]:
        v = ev(src, s=Secret("pw"))
        assert isinstance(v, Secret)
    assert ev('s + "-x"', s=Secret("pw")).reveal() == "pw-x"
    assert ev('"x-" + s', s=Secret("pw")).reveal() == "x-pw"


def test_secret_in_arithmetic_is_an_error_that_does_not_show_it():
    message, _, _ = err("s - 1", s=Secret("hunter2"))
    assert message == "cannot subtract secret and number: expected number, got secret"
    message, _, _ = err("s + 1", s=Secret("hunter2"))
    assert "hunter2" not in message


# ---- comparison and logic --------------------------------------------------


@pytest.mark.parametrize(
    ("src", "value"),
    [
        ("1 < 2", True),
        ("2 < 1", False),
        ("1 <= 1", True),
        ("1.5 > 1", True),
        ("1 >= 1.0", True),
        ('"a" < "b"', True),
        ('"b" <= "a"', False),
        ('"abc" > "abd"', False),
        ('"b" >= "b"', True),
        ("1 == 1.0", True),
        ('1 == "1"', False),
        ("null == null", True),
        ("null != false", True),
        ("[1, [2]] == [1, [2]]", True),
        ("[1] == [1, 2]", False),
        ("{a = 1} == {a = 1.0}", True),
        ("{a = 1} != {b = 1}", True),
        ("true == true", True),
        ("true && false", False),
        ("true && true", True),
        ("false || true", True),
        ("false || false", False),
        ("!false", True),
        ("!!true", True),
        ("1 < 2 && 2 < 3 || false", True),
        ("true || false && false", True),  # && binds tighter
        ("1 + 1 == 2", True),
    ],
)
def test_comparison_and_logic(src, value):
    assert ev(src) is value


def test_secret_equality_compares_content():
    assert ev('s == "pw"', s=Secret("pw")) is True
    assert ev('"pw" == s', s=Secret("pw")) is True
    assert ev("s == t", s=Secret("pw"), t=Secret("pw")) is True
    assert ev('s != "other"', s=Secret("pw")) is True


def test_functions_never_compare_equal():
    assert ev("f == f", f=Function("f", lambda: 1, [])) is False


@pytest.mark.parametrize(
    ("src", "message", "col"),
    [
        ('1 < "a"', "cannot compare number and string: expected number, got string", 5),
        ("[1] < [2]", "cannot compare array and array: expected number or string, got array", 1),
        ("null >= 1", "cannot compare null and number: expected number or string, got null", 1),
        ("1 && true", "operator && expects bools: expected bool, got number", 1),
        ('true || "x"', "operator || expects bools: expected bool, got string", 9),
        (
            "true || 1",
            "operator || expects bools: expected bool, got number",
            9,
        ),  # no short circuit, as in Alloy
    ],
)
def test_comparison_errors(src, message, col):
    assert err(src) == (message, 1, col)


# ---- references, access, index, call ---------------------------------------


def test_identifiers_resolve_through_the_scope_chain_then_the_stdlib():
    outer = Scope({"a": 1, "b": 2})
    inner = Scope({"b": 20}, parent=outer)
    assert evaluate(parse_expression("a + b"), inner) == 21
    assert evaluate(parse_expression('string.to_upper("x")'), inner) == "X"
    shadow = Scope({"string": {"to_upper": Function("mine", lambda s: "mine", [str])}})
    assert evaluate(parse_expression('string.to_upper("x")'), shadow) == "mine"
    assert "a" in inner and "string" in inner and "nope" not in inner


def test_dotted_references_walk_nested_objects():
    scope = {"discovery": {"kubernetes": {"nodes": {"targets": [{"__address__": "n1:10250"}]}}}}
    assert ev("discovery.kubernetes.nodes.targets", **scope) == [{"__address__": "n1:10250"}]
    assert ev('discovery.kubernetes.nodes.targets[0]["__address__"]', **scope) == "n1:10250"
    assert ev("discovery.kubernetes.nodes.targets[0].__address__", **scope) == "n1:10250"


@pytest.mark.parametrize(
    ("src", "message", "col"),
    [
        ("foo", 'identifier "foo" does not exist', 1),
        ("1 + foo", 'identifier "foo" does not exist', 5),
        ("obj.nope", 'field "nope" does not exist', 5),
        ("obj.a.b", 'cannot access field "b" on a value of type number: expected object', 1),
        ("arr[3]", "index 3 is out of range of array with length 2", 5),
        ("arr[-1]", "index -1 is out of range of array with length 2", 5),
        ('arr["x"]', "array index must be a number: expected number, got string", 5),
        ("obj[1]", "object key must be a string: expected string, got number", 5),
        ('"str"[0]', "cannot index a value of type string: expected object or array", 1),
        ("null[0]", "cannot index a value of type null: expected object or array", 1),
        ("obj.a()", "cannot call obj.a: expected function, got number", 1),
        ('"x"()', "cannot call function: expected function, got string", 1),
        ("string.nope()", 'field "nope" does not exist', 8),
    ],
)
def test_reference_errors(src, message, col):
    assert err(src, obj={"a": 1}, arr=[10, 20]) == (message, 1, col)


def test_index_rules():
    assert ev('obj["missing"]', obj={"a": 1}) is None  # [] on a missing key is null, not an error
    assert ev("arr[1.9]", arr=[10, 20]) == 20  # Alloy truncates a float index
    assert ev("[[1, 2], [3]][1][0]") == 3


def test_calling_a_scope_function_and_positioning_its_failure():
    def boom(x: Any) -> Any:
        raise ValueError("it broke")

    assert ev("f(1, 2)", f=lambda a, b: a + b) == 3
    assert err("\n  f(1)", f=boom) == ("f: it broke", 2, 3)


def test_wrong_argument_count():
    assert err('string.to_upper("a", "b")') == ("string.to_upper: expected 1 argument, got 2", 1, 1)
    assert err("string.join()") == ("string.join: expected 2 arguments, got 0", 1, 1)
    assert err("string.format()") == ("string.format: expected at least 1 arguments, got 0", 1, 1)


def test_argument_type_errors_are_positioned_at_the_argument():
    assert err('string.join(["a"], true)') == (
        "string.join: invalid argument 2: expected string, got bool",
        1,
        20,
    )
    assert ev('string.join(["a", 1], 2)') == "a21"  # numbers convert to strings, as in Alloy
    assert err('string.join(["a", true], ",")') == (
        "string.join: invalid argument 1: [1]: expected string, got bool",
        1,
        13,
    )


def test_deep_nesting_is_an_error_not_a_crash():
    e: ast.Expr = ast.Literal(LitKind.NUMBER, "1")
    for _ in range(20000):
        e = ast.ParenExpr(e)
    with pytest.raises(DiagnosticsError) as exc:
        evaluate(e, Scope())
    assert "nested too deeply" in str(exc.value)


def test_multiline_positions():
    src = 'string.format(\n  "%s",\n  1 + "x",\n)'
    with pytest.raises(DiagnosticsError) as exc:
        evaluate(parse_expression(src, "cfg.alloy"), Scope())
    d = exc.value.diagnostics[0]
    assert (d.pos.file, d.pos.line, d.pos.col) == ("cfg.alloy", 3, 7)


# ---- references() ----------------------------------------------------------


def chains(src: str) -> list[list[str]]:
    return [parts for parts, _ in references(parse_expression(src))]


def test_references_collects_dotted_chains():
    assert chains("prometheus.remote_write.default.receiver") == [
        ["prometheus", "remote_write", "default", "receiver"]
    ]
    assert chains("[a.b, c]") == [["a", "b"], ["c"]]
    assert chains('x.y["k"].z') == [["x", "y"]]
    assert chains('remote.kubernetes.secret.prometheus.data["bearerToken"]') == [
        ["remote", "kubernetes", "secret", "prometheus", "data"]
    ]
    assert chains("array.concat(d.a.targets, d.b.targets)") == [
        ["array", "concat"],
        ["d", "a", "targets"],
        ["d", "b", "targets"],
    ]
    assert chains("f(x)[i.j].k") == [["f"], ["x"], ["i", "j"]]
    assert chains('{a = b.c, "q" = -d, e = !(f.g == 1)}') == [["b", "c"], ["d"], ["f", "g"]]
    assert chains('1 + "a"') == []


def test_references_carry_the_position_of_the_first_identifier():
    ((parts, pos),) = references(parse_expression("  1 +\n   a.b.c", "f.alloy"))
    assert parts == ["a", "b", "c"]
    assert (pos.line, pos.col) == (2, 4)
