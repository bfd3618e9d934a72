"""The scanner: tokens, automatic statement terminators, escapes and lexical errors."""

from __future__ import annotations

import pytest

from agent.syntax.scanner import LineIndex, decode, is_valid_identifier, scan
from agent.syntax.token import Tok, go_quote, go_rune


def kinds(text: str) -> list[str]:
    return [str(k) for k in scan(text).kinds]


def pairs(text: str) -> list[tuple[str, str]]:
    t = scan(text)
    return [(str(k), lit) for k, lit in zip(t.kinds, t.lits, strict=True)]


def errors(text: str) -> list[tuple[int, str]]:
    return scan(text).errors


def test_attribute_tokens_and_final_terminator() -> None:
    assert pairs('a = "x"') == [
        ("IDENT", "a"),
        ("=", "="),
        ("STRING", '"x"'),
        ("TERMINATOR", "\n"),
        ("EOF", ""),
    ]


def test_every_operator_and_punctuation() -> None:
    text = "|| && ! = == != < <= > >= + - * / % ^ { } ( ) [ ] , ."
    got = [k for k in kinds(text) if k not in ("TERMINATOR", "EOF")]
    assert got == text.split()


def test_keywords() -> None:
    assert kinds("true false null nullable") == [
        "BOOL",
        "BOOL",
        "NULL",
        "IDENT",
        "TERMINATOR",
        "EOF",
    ]


@pytest.mark.parametrize(
    "text, kind",
    [
        ("0", "NUMBER"),
        ("1234", "NUMBER"),
        ("007", "NUMBER"),
        ("15.0", "FLOAT"),
        ("1.", "FLOAT"),
        (".5", "FLOAT"),
        ("1e3", "FLOAT"),
        ("1E3", "FLOAT"),
        ("2.5e-3", "FLOAT"),
        ("6e+10", "FLOAT"),
    ],
)
def test_numbers(text: str, kind: str) -> None:
    assert pairs(text)[0] == (kind, text)
    assert errors(text) == []


def test_exponent_without_digits() -> None:
    assert errors("x = 1e") == [(4, "exponent has no digits")]
    assert errors("x = 1e+") == [(4, "exponent has no digits")]


def test_number_then_identifier_and_dot_access_on_identifier() -> None:
    assert pairs("0x10")[:2] == [("NUMBER", "0"), ("IDENT", "x10")]
    assert pairs("a.b")[:3] == [("IDENT", "a"), (".", "."), ("IDENT", "b")]


def test_unicode_identifiers() -> None:
    assert pairs("héllo_wörld2 = 1")[0] == ("IDENT", "héllo_wörld2")
    assert pairs("日本 = 1")[0] == ("IDENT", "日本")
    assert is_valid_identifier("wörld")
    assert not is_valid_identifier("with space")
    assert not is_valid_identifier("true")
    assert not is_valid_identifier("1abc")
    assert not is_valid_identifier("")


@pytest.mark.parametrize(
    "literal",
    [
        r'"\a\b\f\n\r\t\v\\\""',
        r'"\101\000\377"',
        r'"\x41\xff"',
        r'"\u00e9\uFFFD"',
        r'"\U0001F600"',
        '"plain, with unicode é and tabs\t"',
    ],
)
def test_every_escape_alloy_accepts(literal: str) -> None:
    assert pairs(literal)[0] == ("STRING", literal)
    assert errors(literal) == []


@pytest.mark.parametrize(
    "literal, offset, message",
    [
        (r'"\q"', 2, "unknown escape sequence"),
        (r'"\'"', 2, "unknown escape sequence"),
        (r'"\xG1"', 2, "illegal character U+0047 'G' in escape sequence"),
        (r'"\12"', 2, "illegal character U+0022 '\"' in escape sequence"),
        (r'"\u12"', 2, "illegal character U+0022 '\"' in escape sequence"),
        (r'"\400"', 2, "escape sequence is invalid Unicode code point"),
        (r'"\uD800"', 2, "escape sequence is invalid Unicode code point"),
        (r'"\U00110000"', 2, "escape sequence is invalid Unicode code point"),
        ('"\\', 2, "escape sequence not terminated"),
        ('"\\x4', 2, "escape sequence not terminated"),
    ],
)
def test_bad_escapes(literal: str, offset: int, message: str) -> None:
    assert errors(literal)[0] == (offset, message)


def test_bad_escape_is_reported_at_the_character_after_the_backslash() -> None:
    # As Alloy: the position of the escape letter, not of the backslash.
    assert errors('x = "ab\\q"') == [(8, "unknown escape sequence")]


def test_unterminated_strings() -> None:
    assert errors('a = "abc\nb = 1') == [(4, "string literal not terminated")]
    assert errors('a = "abc') == [(4, "string literal not terminated")]
    assert errors("a = `abc\ndef") == [(4, "string literal not terminated")]


def test_raw_strings_span_lines_and_keep_backslashes() -> None:
    text = 'a = `one\\n\ntwo "q"`\nb = 1'
    assert pairs(text)[2] == ("STRING", '`one\\n\ntwo "q"`')
    assert errors(text) == []


def test_single_quotes_are_an_error() -> None:
    t = scan("a = 'x'")
    assert t.kinds[2] is Tok.ILLEGAL
    assert t.errors == [(4, "illegal single-quoted string; use double quotes")]


def test_illegal_characters_and_lone_pipes() -> None:
    assert errors("a = @") == [(4, "illegal character U+0040 '@'")]
    assert errors("a = b | c") == [(7, "missing second | in ||")]
    assert errors("a = b & c") == [(7, "missing second & in &&")]
    assert errors("a = \u00a0") == [(4, "illegal character U+00A0")]


def test_nul_bom_and_undecodable_bytes() -> None:
    assert errors("a = \x00") == [(4, "illegal character NUL")]
    assert errors("\ufeffa = 1") == []  # a leading byte order mark is skipped
    assert errors("a = \ufeff1") == [(4, "illegal byte order mark")]
    text = decode(b'a = "\xff\xfe"')
    assert errors(text) == [(5, "illegal UTF-8 encoding"), (6, "illegal UTF-8 encoding")]
    # also inside comments, as Alloy checks every character it reads
    assert errors(decode(b"// \xc3(\n")) == [(3, "illegal UTF-8 encoding")]


def test_newline_ends_a_statement_only_after_a_value() -> None:
    assert kinds("a = 1\nb = 2") == [
        "IDENT", "=", "NUMBER", "TERMINATOR", "IDENT", "=", "NUMBER", "TERMINATOR", "EOF",
    ]  # fmt: skip
    # after `=`, `,`, `[`, `(`, `{` and operators a newline is only whitespace
    assert "TERMINATOR" not in kinds("a =\n[\n1,\n2 +\n3,\n]")[:-2]
    # after an identifier, literal or closing bracket it ends the statement
    for closer in ("x", "1", "1.5", '"s"', "`r`", "true", "null", ")", "]", "}"):
        assert kinds(closer + "\n")[-2:] == ["TERMINATOR", "EOF"], closer


def test_multiline_array_needs_its_trailing_comma() -> None:
    assert kinds("[\n1,\n2\n]")[:6] == ["[", "NUMBER", ",", "NUMBER", "TERMINATOR", "]"]


def test_comments_are_tokens_and_a_line_comment_ends_the_statement() -> None:
    t = scan("a = 1 // note\nb = 2 /* inline */ + 3\n/* multi\nline */")
    got = [(str(k), lit) for k, lit in zip(t.kinds, t.lits, strict=True)]
    assert got == [
        ("IDENT", "a"), ("=", "="), ("NUMBER", "1"),
        ("TERMINATOR", "\n"), ("COMMENT", "// note"),
        ("IDENT", "b"), ("=", "="), ("NUMBER", "2"),
        ("COMMENT", "/* inline */"), ("+", "+"), ("NUMBER", "3"),
        ("TERMINATOR", "\n"), ("COMMENT", "/* multi\nline */"),
        ("EOF", ""),
    ]  # fmt: skip
    # the terminator a comment stands for sits where the comment starts
    assert t.offsets[3] == t.offsets[4] == 6


def test_block_comment_with_newline_ends_the_statement() -> None:
    assert kinds("a = 1 /* x\n */ b = 2")[3] == "TERMINATOR"
    assert kinds("a = 1 /* x */ /* y */\nb = 2")[3] == "TERMINATOR"
    assert kinds("a = 1 /* x */ b")[3] == "COMMENT"


def test_unterminated_block_comment() -> None:
    t = scan("a = 1\n/* never closed")
    assert t.errors == [(6, "block comment not terminated")]
    assert t.lits[-2] == "/* never closed"


def test_carriage_returns() -> None:
    t = scan("a = 1 // c\r\nb = 2\r\n/* x\r\ny */")
    assert "// c" in t.lits
    assert "/* x\ny */" in t.lits
    assert t.errors == []


def test_line_index_counts_characters() -> None:
    text = "é = 1\nab = 2"
    index = LineIndex(text, "f.alloy")
    assert str(index.pos(0)) == "f.alloy:1:1"
    assert str(index.pos(2)) == "f.alloy:1:3"
    assert str(index.pos(7)) == "f.alloy:2:2"
    assert index.pos(7).offset == 7


def test_go_formatting_helpers() -> None:
    assert go_quote('a"b\\c\n\x01é') == '"a\\"b\\\\c\\n\\x01é"'
    assert go_rune("@") == "U+0040 '@'"
    assert go_rune("\n") == "U+000A"


def test_large_input_scans_in_one_pass() -> None:
    block = 'prometheus.scrape "x" {\n  targets = [{"__address__" = "a:1"}]\n  forward_to = [a.b.c]\n}\n'
    t = scan(block * 2000)
    assert len(t.kinds) == 2000 * 27 + 1
    assert t.errors == []
