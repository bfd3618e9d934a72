from __future__ import annotations

import socket
from typing import Any

import pytest

from agent.syntax.diag import DiagnosticsError
from agent.syntax.gofmt import shortest_g, sprintf
from agent.syntax.parser import parse_expression
from agent.syntax.stdlib import DEPRECATED, STDLIB
from agent.syntax.value import Secret
from agent.syntax.vm import Scope, evaluate


def ev(src: str, **variables: Any) -> Any:
    return evaluate(parse_expression(src, "t.alloy"), Scope(variables))


def err(src: str, **variables: Any) -> tuple[str, int]:
    with pytest.raises(DiagnosticsError) as exc:
        ev(src, **variables)
    (d,) = exc.value.diagnostics
    return d.message, d.pos.col


# ---- sys, constants --------------------------------------------------------


def test_sys_env_and_env(monkeypatch):
    monkeypatch.setenv("SHOAL_TEST_VAR", "value-1")
    monkeypatch.delenv("SHOAL_UNSET_VAR", raising=False)
    assert ev('sys.env("SHOAL_TEST_VAR")') == "value-1"
    assert ev('env("SHOAL_TEST_VAR")') == "value-1"
    assert ev('sys.env("SHOAL_UNSET_VAR")') == ""  # Go's os.Getenv


def test_constants():
    assert ev("constants.hostname") == socket.gethostname()
    assert ev("constants.os") == "linux"
    assert ev("constants.arch") in {"amd64", "arm64"}
    assert ev("constants.version").startswith("v")


# ---- string ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "value"),
    [
        # Alloy's documented examples
        ('string.format("Hello, %s!", "Ander")', "Hello, Ander!"),
        ('string.format("There are %d lights", 4)', "There are 4 lights"),
        ('string.join(["foo", "bar", "baz"], "-")', "foo-bar-baz"),
        ('string.join(["foo", "bar", "baz"], ", ")', "foo, bar, baz"),
        ('string.join(["foo"], ", ")', "foo"),
        ('string.replace("1 + 2 + 3", "+", "-")', "1 - 2 - 3"),
        ('string.split("foo,bar,baz", ",")', ["foo", "bar", "baz"]),
        ('string.split("foo", ",")', ["foo"]),
        ('string.split("", ",")', [""]),
        ('string.to_lower("HELLO")', "hello"),
        ('string.to_upper("hello")', "HELLO"),
        ('string.trim("?!hello?!", "!?")', "hello"),
        ('string.trim("foobar", "far")', "oob"),
        ('string.trim("   hello! world.!  ", "! ")', "hello! world."),
        ('string.trim_prefix("helloworld", "hello")', "world"),
        ('string.trim_suffix("helloworld", "world")', "hello"),
        ('string.trim_space("  hello\\n\\n")', "hello"),
        # edges, as Go's strings package behaves
        ('string.split("abc", "")', ["a", "b", "c"]),
        ('string.replace("abc", "", "-")', "-a-b-c-"),
        ('string.trim_prefix("hello", "x")', "hello"),
        ('string.trim_suffix("hello", "")', "hello"),
        ('string.trim("abc", "")', "abc"),
        ('string.trim_space("\\u00a0\\u2003x\\u0085")', "x"),
        ('string.trim_space("\\x1cx")', "\x1cx"),  # not a space to Go
        ('string.join([], ",")', ""),
        ("string.to_upper(null)", ""),  # null decodes to Go's zero value
        # the deprecated names are the same functions
        ('format("%s", "x")', "x"),
        ('join(["a", "b"], "")', "ab"),
        ('split("a b", " ")', ["a", "b"]),
        ('replace("aa", "a", "b")', "bb"),
        ('to_lower("A")', "a"),
        ('to_upper("a")', "A"),
        ('trim("xax", "x")', "a"),
        ('trim_prefix("xa", "x")', "a"),
        ('trim_suffix("ax", "x")', "a"),
        ('trim_space(" a ")', "a"),
    ],
)
def test_string_functions(src, value):
    assert ev(src) == value


def test_string_functions_reject_secrets_without_showing_them():
    message, col = err("string.to_upper(s)", s=Secret("hunter2"))
    assert message == "string.to_upper: invalid argument 1: expected string, got secret"
    assert col == 17


# ---- string.format: Go's fmt ------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "args", "out"),
    [
        ("%s", ["x"], "x"),
        ("%v", ["x"], "x"),
        ("%q", ['a"b'], '"a\\"b"'),
        ("%d", [42], "42"),
        ("%5d|%-5d|%05d", [42, 42, 42], "   42|42   |00042"),
        ("%+d % d", [5, 5], "+5  5"),
        ("%x %X %o %b", [255, 255, 8, 5], "ff FF 10 101"),
        ("%#x %#o", [255, 8], "0xff 010"),
        ("%.3d", [7], "007"),
        ("%c%c", [72, 105], "Hi"),
        ("%U", [65], "U+0041"),
        ("%q", [65], "'A'"),
        ("%f", [3.14159], "3.141590"),
        ("%.2f", [3.14159], "3.14"),
        ("%8.3f|", [3.14159], "   3.142|"),
        ("%e", [123456.0], "1.234560e+05"),
        ("%E", [0.000123], "1.230000E-04"),
        ("%g", [1e6], "1e+06"),
        ("%g", [100000.0], "100000"),
        ("%g", [0.0001], "0.0001"),
        ("%g", [0.00001], "1e-05"),
        ("%.3g", [3.14159], "3.14"),
        ("%v", [1.5], "1.5"),
        ("%v", [3.0], "3"),
        ("%v", [1234567.0], "1.234567e+06"),
        ("%f", [float("inf")], "+Inf"),
        ("%v", [float("nan")], "NaN"),
        ("%t %v", [True, False], "true false"),
        ("%v", [None], "<nil>"),
        ("%v", [[1, "a", [True]]], "[1 a [true]]"),
        ("%d", [[1, 2]], "[1 2]"),
        ("%q", [["a", "b"]], '["a" "b"]'),
        ("%v", [{"b": 2, "a": 1}], "map[a:1 b:2]"),
        ("%x", ["hi"], "6869"),
        ("%X", ["hi"], "6869"),
        ("% x", ["hi"], "68 69"),
        ("%.2s", ["hello"], "he"),
        ("%6s|%-6s|", ["ab", "ab"], "    ab|ab    |"),
        ("100%%", [], "100%"),
        ("%[2]s %[1]s", ["a", "b"], "b a"),
        ("%*d", [5, 1], "    1"),
        # Go's in-band error markers
        ("%d", ["x"], "%!d(string=x)"),
        ("%s", [5], "%!s(int=5)"),
        ("%d", [1.5], "%!d(float64=1.5)"),
        ("%f", [4], "%!f(int=4)"),
        ("%t", [1], "%!t(int=1)"),
        ("%s", [None], "%!s(<nil>)"),
        ("%z", [1], "%!z(int=1)"),
        ("%d %d", [1], "1 %!d(MISSING)"),
        ("%d", [1, "a", 2.5], "1%!(EXTRA string=a, float64=2.5)"),
        ("x", [1], "x%!(EXTRA int=1)"),
        ("%", [], "%!(NOVERB)"),
        ("%[3]d", [1], "%!d(BADINDEX)"),
        # secrets never print
        ("%s %v %q", [Secret("pw"), Secret("pw"), Secret("pw")], '(secret) (secret) "(secret)"'),
        ("%x", [Secret("pw")], "%!x(alloytypes.Secret=(secret))"),
    ],
)
def test_sprintf_matches_go(fmt, args, out):
    assert sprintf(fmt, args) == out


def test_string_format_converts_alloy_values_as_go_sees_them():
    assert ev('string.format("%d-%s-%v", 1, "a", [1, 2])') == "1-a-[1 2]"
    assert ev('string.format("%s", s)', s=Secret("pw")) == "(secret)"
    assert ev('string.format("%d", 2 * 3)') == "6"
    assert ev('string.format("%d", 7 / 2)') == "3"
    assert ev('string.format("%v", 7.0 / 2)') == "3.5"


@pytest.mark.parametrize(
    ("x", "out"),
    [
        (0.0, "0"),
        (1.0, "1"),
        (123456.0, "123456"),
        (1e21, "1e+21"),
        (1.5e-5, "1.5e-05"),
        (-2.5, "-2.5"),
    ],
)
def test_shortest_g(x, out):
    assert shortest_g(x) == out


# ---- encoding --------------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "value"),
    [
        ('encoding.from_base64("dGFuZ2VyaW5l")', "tangerine"),
        ('base64_decode("dGFuZ2VyaW5l")', "tangerine"),
        ('encoding.from_base64("")', ""),
        ('encoding.from_URLbase64("Pz8_")', "???"),
        ('encoding.to_base64("tangerine")', "dGFuZ2VyaW5l"),
        ('encoding.to_URLbase64("???")', "Pz8_"),
        ('encoding.from_json("15")', 15),
        ('encoding.from_json("[1, 2, 3]")', [1, 2, 3]),
        ('encoding.from_json("null")', None),
        ('encoding.from_json("{\\"key\\": \\"value\\"}")', {"key": "value"}),
        ('json_decode("true")', True),
        ('encoding.from_yaml("15")', 15),
        ('encoding.from_yaml("[1, 2, 3]")', [1, 2, 3]),
        ('encoding.from_yaml("null")', None),
        ('encoding.from_yaml("key: value")', {"key": "value"}),
        ('yaml_decode("a: 1")', {"a": 1}),
        ('encoding.from_yaml("")', None),
        (
            'encoding.from_yaml("a: yes\\nb: on\\nc: true")',
            {"a": "yes", "b": "on", "c": True},
        ),  # YAML 1.2 bools
        ('encoding.from_yaml("d: 2024-01-02")', {"d": "2024-01-02"}),
        ('encoding.from_yaml("1: a\\nnull: b")', {"1": "a", "null": "b"}),
        (
            'encoding.from_yaml("a: 1\\n---\\nb: 2")',
            {"a": 1},
        ),  # the first document, as yaml.Unmarshal
    ],
)
def test_encoding_functions(src, value):
    assert ev(src) == value


def test_json_numbers_are_floats_as_go_decodes_them():
    v = ev('encoding.from_json("[15, 1.5]")')
    assert v == [15.0, 1.5] and all(type(x) is float for x in v)
    assert ev('string.format("%v", encoding.from_json("15"))') == "15"


@pytest.mark.parametrize(
    ("src", "start"),
    [
        ('encoding.from_json("{bad")', "encoding.from_json: invalid JSON"),
        ('encoding.from_yaml("a: [1")', "encoding.from_yaml: invalid YAML"),
        ('encoding.from_base64("!!!")', "encoding.from_base64: illegal base64 data"),
        ('encoding.from_base64("dGFuZ2VyaW5")', "encoding.from_base64: illegal base64 data"),
    ],
)
def test_encoding_errors_are_positioned_at_the_argument(src, start):
    message, col = err(src)
    assert message.startswith(start)
    assert col == src.index("(") + 2


# ---- array, coalesce, convert ----------------------------------------------


@pytest.mark.parametrize(
    ("src", "value"),
    [
        ("array.concat([])", []),
        ("array.concat([1, 2], [3, 4])", [1, 2, 3, 4]),
        ("array.concat([1, 2], [], [true, null])", [1, 2, True, None]),
        ("array.concat([[1, 2], [3, 4]], [[5, 6]])", [[1, 2], [3, 4], [5, 6]]),
        ("array.concat()", []),
        ("concat([1], [2])", [1, 2]),
        (
            'array.combine_maps([{"instance"="1.1.1.1", "team"="A"}], [{"instance"="1.1.1.1", "cluster"="prod"}], ["instance"])',
            [{"instance": "1.1.1.1", "team": "A", "cluster": "prod"}],
        ),
        (
            'array.combine_maps([{"instance"="1.1.1.1", "team"="A"}], [{"instance"="1.1.1.1", "team"="B"}], ["instance"])',
            [{"instance": "1.1.1.1", "team": "B"}],
        ),
        (
            'array.combine_maps([{"instance"="1.1.1.1", "team"="A"}, {"instance"="1.1.1.1", "team"="B"}], '
            '[{"instance"="1.1.1.1", "cluster"="prod"}, {"instance"="1.1.1.1", "cluster"="ops"}], ["instance"])',
            [
                {"instance": "1.1.1.1", "team": "A", "cluster": "prod"},
                {"instance": "1.1.1.1", "team": "A", "cluster": "ops"},
                {"instance": "1.1.1.1", "team": "B", "cluster": "prod"},
                {"instance": "1.1.1.1", "team": "B", "cluster": "ops"},
            ],
        ),
        (
            'array.combine_maps([{"a"="1"}, {"b"="2"}], [{"a"="1", "c"="3"}], ["a"])',
            [{"a": "1", "c": "3"}],
        ),
        (
            'array.combine_maps([{"a"="1"}, {"a"="2"}], [{"a"="1", "c"="3"}], ["a"], true)',
            [{"a": "1", "c": "3"}, {"a": "2"}],
        ),
        ('coalesce("a", "b")', "a"),
        ('coalesce("", "b")', "b"),
        ('coalesce(sys.env("SHOAL_DOES_NOT_EXIST"), "c")', "c"),
        ("coalesce(null, [], {}, 0, false, 5)", 5),
        ('coalesce("", "")', ""),
        ("coalesce([], {})", {}),
        ("coalesce()", None),
        ("coalesce(null, [1])", [1]),
        ("convert.nonsensitive(s)", "pw"),
        ("nonsensitive(s)", "pw"),
        ('convert.nonsensitive("plain")', "plain"),
        ('file.path_join("a", "b/", "../c")', "a/c"),
    ],
)
def test_array_and_other_functions(src, value, monkeypatch):
    monkeypatch.delenv("SHOAL_DOES_NOT_EXIST", raising=False)
    assert ev(src, s=Secret("pw")) == value


def test_coalesce_returns_a_secret_untouched():
    v = ev('coalesce(s, "x")', s=Secret("pw"))
    assert isinstance(v, Secret) and v.reveal() == "pw"


@pytest.mark.parametrize(
    ("src", "message", "col"),
    [
        (
            'array.concat([1], "x")',
            "array.concat: invalid argument 2: expected array, got string",
            19,
        ),
        (
            "array.combine_maps([], [], [])",
            "array.combine_maps: merge conditions must not be empty",
            28,
        ),
        (
            'array.combine_maps([1], [], ["a"])',
            "array.combine_maps: invalid argument 1: [0]: expected object, got number",
            20,
        ),
        (
            'array.combine_maps([], [], "a")',
            "array.combine_maps: invalid argument 3: expected array, got string",
            28,
        ),
        ("array.combine_maps([], [])", "array.combine_maps: expected 3 or 4 arguments, got 2", 1),
        (
            'array.combine_maps([], [], ["a"], 1)',
            "array.combine_maps: invalid argument 4: expected bool, got number",
            35,
        ),
        (
            "convert.nonsensitive(1)",
            "convert.nonsensitive: invalid argument 1: expected secret or string, got number",
            22,
        ),
    ],
)
def test_array_errors(src, message, col):
    assert err(src) == (message, col)


def test_every_required_name_is_in_the_stdlib():
    for ns, names in {
        "string": [
            "format",
            "join",
            "split",
            "replace",
            "to_lower",
            "to_upper",
            "trim",
            "trim_prefix",
            "trim_suffix",
            "trim_space",
        ],
        "encoding": ["from_json", "from_yaml", "from_base64"],
        "array": ["concat", "combine_maps"],
        "convert": ["nonsensitive"],
        "sys": ["env"],
        "constants": ["hostname", "os", "arch"],
    }.items():
        for name in names:
            assert name in STDLIB[ns], f"{ns}.{name}"
    assert "coalesce" in STDLIB
    for name in DEPRECATED:
        assert name in STDLIB
