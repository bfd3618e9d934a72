from __future__ import annotations

import json
import logging
import math
from typing import Any, Literal

import pytest

from agent.storage import Appendable, Fanout, SampleBatch
from agent.syntax.strings import UnquoteError, quote, unquote
from agent.syntax.value import (
    ConvertError,
    Duration,
    DurationError,
    Function,
    Secret,
    convert,
    format_duration_ns,
    format_number,
    parse_duration_ns,
    parse_number,
    to_alloy,
    type_name,
    values_equal,
)

# ---- secrets ---------------------------------------------------------------


def test_secret_never_shows_its_content_when_printed():
    s = Secret("hunter2")
    assert str(s) == "(secret)"
    assert "hunter2" not in repr(s)
    assert f"{s}" == "(secret)"
    assert f"{s!r}" == "Secret((secret))"
    assert f"{s:>10}" == "  (secret)"
    assert "%s %r" % (s, s) == "(secret) Secret((secret))"  # noqa: UP031 - testing %-formatting on purpose
    assert "{}".format(s) == "(secret)"  # noqa: UP032
    assert "hunter2" not in repr([s, {"k": s}])
    assert s.reveal() == "hunter2"


def test_secret_cannot_be_serialised_to_json():
    with pytest.raises(TypeError):
        json.dumps({"password": Secret("hunter2")})


def test_secret_does_not_leak_through_logging(caplog):
    with caplog.at_level(logging.INFO):
        logging.getLogger("t").info("token is %s", Secret("hunter2"))
        logging.getLogger("t").info("token is %r", Secret("hunter2"))
    assert "hunter2" not in caplog.text
    assert "(secret)" in caplog.text


def test_secret_equality_compares_content_and_it_is_immutable():
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"  # Python-level; the language compares secret and string by content
    assert hash(Secret("a")) == hash(Secret("a"))
    with pytest.raises(AttributeError):
        Secret("a")._value = "b"  # type: ignore[misc]
    assert Secret(Secret("x")).reveal() == "x"


# ---- type names and equality ----------------------------------------------


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (None, "null"),
        (True, "bool"),
        (False, "bool"),
        (0, "number"),
        (1.5, "number"),
        (Duration(3), "number"),
        ("", "string"),
        ([], "array"),
        ((1, 2), "array"),
        ({}, "object"),
        (Secret("x"), "secret"),
        (len, "function"),
        (lambda: 1, "function"),
        (Function("f", lambda: 1, []), "function"),
        (object(), "capsule"),
        (SampleBatch(), "capsule"),
    ],
)
def test_type_name(value, name):
    assert type_name(value) == name


def test_values_equal_follows_alloy():
    assert values_equal(3, 3.0)
    assert not values_equal(1, True)
    assert not values_equal(0, False)
    assert not values_equal(None, False)
    assert values_equal(None, None)
    assert values_equal([1, "a", [None]], [1.0, "a", [None]])
    assert not values_equal([1, 2], [1])
    assert values_equal({"a": 1, "b": [1]}, {"b": [1], "a": 1})
    assert not values_equal({"a": 1}, {"b": 1})
    assert not values_equal({"a": True}, {"a": 1})
    assert values_equal(Secret("x"), "x")
    assert values_equal("x", Secret("x"))
    assert not values_equal(Secret("x"), "y")
    f = Function("f", lambda: 1, [])
    assert not values_equal(f, f)
    o = object()
    assert values_equal(o, o)
    assert not values_equal(o, object())


# ---- numbers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (10, "10"),
        (-3, "-3"),
        (1.5, "1.5"),
        (1.0, "1"),
        (1e20, "100000000000000000000"),
        (1.5e-7, "0.00000015"),
        (-0.0, "-0"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (math.nan, "NaN"),
        (0.1, "0.1"),
    ],
)
def test_format_number_is_go_formatfloat_f(value, text):
    assert format_number(value) == text


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("15", 15),
        ("-2", -2),
        ("1.5", 1.5),
        ("-1.5", -1.5),
        ("1e3", 1000.0),
        ("18446744073709551615", 2**64 - 1),
    ],
)
def test_parse_number_accepts_alloy_numeric_strings(text, value):
    n = parse_number(text)
    assert n == value and type(n) is type(value)


@pytest.mark.parametrize(
    "text",
    ["", "abc", " 1", "1 ", "18446744073709551616", "--1", "0x10", "1_000", "-1_0", "- 1", "-+1.5"],
)
def test_parse_number_rejects_the_rest(text):
    with pytest.raises(ValueError):
        parse_number(text)


# ---- durations -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("15s", 15.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        ("2d", 172800.0),
        ("1w", 604800.0),
        ("1y", 31536000.0),
        ("0", 0.0),
        ("-1m", -60.0),
        ("+5s", 5.0),
        ("100us", 0.0001),
        ("100\u00b5s", 0.0001),
        ("10ns", 1e-8),
        ("1h2m3s4ms", 3723.004),
        (".5s", 0.5),
        ("1.s", 1.0),
    ],
)
def test_durations_parse_like_go_plus_prometheus_units(text, seconds):
    assert Duration(text) == pytest.approx(seconds)
    assert isinstance(Duration(text), float)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("15x", 'unknown unit "x" in duration "15x"'),
        ("15", 'missing unit in duration "15"'),
        ("", 'invalid duration ""'),
        ("s", 'invalid duration "s"'),
        (".s", 'invalid duration ".s"'),
        ("-", 'invalid duration "-"'),
        ("1m 30s", 'unknown unit "m " in duration "1m 30s"'),
        ("300000000h", 'invalid duration "300000000h": out of range'),
    ],
)
def test_bad_durations_are_rejected_with_a_reason(text, message):
    with pytest.raises(DurationError) as exc:
        parse_duration_ns(text)
    assert str(exc.value) == message


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5\u00b5s"),
        (500_000_000, "500ms"),
        (1_500_000_000, "1.5s"),
        (60_000_000_000, "1m0s"),
        (90_000_000_000, "1m30s"),
        (3_600_000_000_000, "1h0m0s"),
        (-90_000_000_000, "-1m30s"),
        (86_400_000_000_000, "24h0m0s"),
    ],
)
def test_durations_print_like_go(ns, text):
    assert format_duration_ns(ns) == text


def test_duration_round_trips_through_its_text():
    for text in ["15s", "1m30s", "500ms", "1h0m0s", "2h45m10.5s"]:
        assert str(Duration(text)) == text
        assert Duration(str(Duration(text))) == Duration(text)


# ---- strings ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("lit", "value"),
    [
        ('"plain"', "plain"),
        ('""', ""),
        (r'"\a\b\f\n\r\t\v\\\"\'"', "\a\b\f\n\r\t\v\\\"'"),
        (r'"\101\102"', "AB"),
        (r'"\x41\x62"', "Ab"),
        (r'"\xc3\xa9"', "\u00e9"),  # bytes that form UTF-8 make one character, as in Go
        (r'"\u00e9\U0001F600"', "\u00e9\U0001f600"),
        (r'"\377"', "\ufffd"),  # a lone byte that is not UTF-8
        ('"h\u00e9llo \u4e16\u754c"', "h\u00e9llo \u4e16\u754c"),
        ('`raw \\n "kept"`', 'raw \\n "kept"'),
        ("`a\r\nb`", "a\nb"),
        ("``", ""),
    ],
)
def test_unquote_handles_every_escape(lit, value):
    assert unquote(lit) == value


@pytest.mark.parametrize(
    "lit",
    ['"\\q"', '"\\x4"', '"\\400"', '"\\12"', '"\\uD800"', '"\\U00110000"', '"abc', '"a\\"', "x"],
)
def test_unquote_rejects_malformed_literals(lit):
    with pytest.raises(UnquoteError):
        unquote(lit)


@pytest.mark.parametrize(
    "s",
    ["", "abc", 'a"b', "a\\b", "tab\there", "nl\n", "\x00\x7f", "\u00e9", "\U0001f600", "\u200b"],
)
def test_quote_round_trips_through_unquote(s):
    assert unquote(quote(s)) == s


def test_quote_is_go_strconv_quote():
    assert quote('a"b\n') == '"a\\"b\\n"'
    assert quote("\x01") == '"\\x01"'
    assert quote("\u200b") == '"\\u200b"'


def test_to_alloy_renders_values_without_secrets():
    v = {"a": [1, 1.5, "x\n", None, True], "s": Secret("pw")}
    text = to_alloy(v)
    assert text == '{"a" = [1, 1.5, "x\\n", null, true], "s" = (secret)}'
    assert "pw" not in text


# ---- conversion ------------------------------------------------------------


def test_convert_applies_alloy_conversions():
    assert convert(15, str) == "15"
    assert convert(1.5, str) == "1.5"
    assert convert("15", int) == 15
    assert convert("1.5", float) == 1.5
    assert convert(2.0, int) == 2
    assert convert(3, float) == 3.0 and type(convert(3, float)) is float
    assert convert("x", Secret) == Secret("x")
    assert convert("1m", Duration) == 60.0
    assert convert(0, Duration) == 0.0
    assert convert(None, str) == ""
    assert convert(None, int) == 0
    assert convert(None, list[str]) == []
    assert convert(None, str | None) is None
    assert convert([1, "a"], list[str]) == ["1", "a"]
    assert convert({"a": 1}, dict[str, str]) == {"a": "1"}
    assert convert("b", Literal["a", "b"]) == "b"
    assert convert([1, [2]], Any) == [1, [2]]


@pytest.mark.parametrize(
    ("value", "typ", "message"),
    [
        (True, str, "expected string, got bool"),
        (Secret("x"), str, "expected string, got secret"),
        ("abc", int, 'expected number, got string "abc"'),
        (1.5, int, "expected an integer, got 1.5"),
        ([1], int, "expected number, got array"),
        (1, bool, "expected bool, got number"),
        ("15x", Duration, 'unknown unit "x" in duration "15x"'),
        ([], Duration, "expected duration string, got array"),
        (1, Secret, "expected secret or string, got number"),
        ("x", list[str], "expected array, got string"),
        (["a", True], list[str], "[1]: expected string, got bool"),
        ({"a": {"b c": True}}, dict[str, dict[str, str]], '.a["b c"]: expected string, got bool'),
        ("c", Literal["a", "b"], 'expected one of "a", "b", got "c"'),
        ("x", Appendable, 'expected capsule("Appendable"), got string'),
        ([Fanout([]), "x"], list[Appendable], '[1]: expected capsule("Appendable"), got string'),
        (True, int | str, "expected number or string, got bool"),
    ],
)
def test_convert_errors_name_expected_and_actual(value, typ, message):
    with pytest.raises(ConvertError) as exc:
        convert(value, typ)
    assert str(exc.value) == message


def test_convert_accepts_capsules_by_protocol():
    class Receiver:
        def append(self, batch: SampleBatch) -> None:
            pass

    r = Receiver()
    assert convert([r], list[Appendable]) == [r]
