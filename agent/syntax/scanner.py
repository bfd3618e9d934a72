"""Turns Alloy source text into tokens, the way Alloy's scanner does.

One compiled regular expression recognises the common tokens over the whole
text; only the rare cases (strings with numeric escapes, non-ASCII
identifiers, errors) fall back to short hand-written loops. That keeps a
5,000-line configuration well under the time budget in pure Python.

Like Alloy (and Go), newlines end statements: after an identifier, literal or
closing bracket, a newline (or a comment that runs to the end of the line, or
the end of the file) becomes a TERMINATOR token; every other newline is
whitespace. That is why a multi-line array needs a comma after its last
element.

Errors do not stop the scanner: each is recorded with its offset and a token is
still produced, so the parser can go on and report everything at once.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass, field

from agent.syntax.diag import Pos
from agent.syntax.token import KEYWORDS, OPERATORS, Tok, go_rune

_MASTER = re.compile(
    r"""
      ([ \t\r]+)                                              # 1 blanks
    | (\n)                                                    # 2 newline
    | ([A-Za-z_][A-Za-z0-9_]*)                                # 3 ASCII identifier or keyword
    | ((?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]*)?)  # 4 number
    | ("(?:[^"\\\n]|\\[abfnrtv\\"])*")                        # 5 string with simple escapes
    | (`[^`]*`)                                               # 6 raw string
    | (//[^\n]*|/\*.*?\*/)                                    # 7 comment
    | (\|\||&&|==|!=|<=|>=|[!=<>+\-*/%^{}()\[\],.])           # 8 operator or punctuation
    """,
    re.S | re.X,
)

# Characters Alloy rejects wherever they appear, even inside strings and comments.
_BAD_CHARS = re.compile("[\x00\ufeff\ud800-\udfff]")
_NEWLINE = re.compile("\n")
_ASCII_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

_CLOSERS = (Tok.RCURLY, Tok.RPAREN, Tok.RBRACK)
_SIMPLE_ESCAPES = frozenset('abfnrtv\\"')


@dataclass(slots=True)
class Tokens:
    """The scanned tokens as parallel lists (cheaper than one object per token)."""

    kinds: list[Tok] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    lits: list[str] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (offset, message)


class LineIndex:
    """Maps character offsets to 1-based line and column."""

    __slots__ = ("file", "starts")

    def __init__(self, text: str, file: str = "") -> None:
        self.file = file
        self.starts = [0]
        self.starts.extend(m.end() for m in _NEWLINE.finditer(text))

    def line(self, offset: int) -> int:
        return bisect_right(self.starts, offset)

    def pos(self, offset: int) -> Pos:
        line = bisect_right(self.starts, offset)
        return Pos(self.file, line, offset - self.starts[line - 1] + 1, offset)


def decode(source: str | bytes) -> str:
    """Source as text. Bytes that are not UTF-8 survive as lone surrogates, which the scanner reports."""
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source).decode("utf-8", "surrogateescape")
    return source


def is_valid_identifier(s: str) -> bool:
    """Whether ``s`` scans as exactly one identifier (keywords are not identifiers)."""
    if not s or s in KEYWORDS:
        return False
    if _ASCII_IDENT.match(s):
        return True
    return _is_letter(s[0]) and _ident_end(s, 1) == len(s)


def scan(text: str) -> Tokens:
    """All tokens of ``text``, comments included, ending with EOF."""
    out = Tokens()
    kinds = out.kinds
    offs = out.offsets
    lits = out.lits
    errs = out.errors
    n = len(text)
    i = 1 if text.startswith("\ufeff") else 0
    insert = False  # a newline here would end a statement
    match = _MASTER.match

    while i < n:
        m = match(text, i)
        g = m.lastindex if m is not None else 0
        if g == 1:
            i = m.end()  # type: ignore[union-attr]
            continue
        if g == 2:
            if insert:
                kinds.append(Tok.TERMINATOR)
                offs.append(i)
                lits.append("\n")
                insert = False
            i += 1
            continue
        if g == 3:
            end = m.end()  # type: ignore[union-attr]
            if end < n and text[end] >= "\x80":
                end = _ident_end(text, end)
            lit = text[i:end]
            kinds.append(KEYWORDS.get(lit, Tok.IDENT))
            offs.append(i)
            lits.append(lit)
            insert = True
            i = end
            continue
        if g == 4:
            lit = m.group(4)  # type: ignore[union-attr]
            kind = Tok.NUMBER
            if "." in lit:
                kind = Tok.FLOAT
            e = lit.find("e")
            if e < 0:
                e = lit.find("E")
            if e >= 0:
                kind = Tok.FLOAT
                if not lit[-1].isdigit():
                    errs.append((i, "exponent has no digits"))
            kinds.append(kind)
            offs.append(i)
            lits.append(lit)
            insert = True
            i += len(lit)
            continue
        if g == 5 or g == 6:
            lit = m.group(g)  # type: ignore[union-attr]
            kinds.append(Tok.STRING)
            offs.append(i)
            lits.append(lit)
            insert = True
            i += len(lit)
            continue
        if g == 7:
            if insert and _comment_ends_line(text, i):
                kinds.append(Tok.TERMINATOR)
                offs.append(i)
                lits.append("\n")
                insert = False
                continue  # the comment itself is scanned next time round
            lit = m.group(7)  # type: ignore[union-attr]
            kinds.append(Tok.COMMENT)
            offs.append(i)
            lits.append(_strip_cr(lit) if "\r" in lit else lit)
            insert = False
            i += len(lit)
            continue
        if g == 8:
            lit = m.group(8)  # type: ignore[union-attr]
            if lit == "/" and i + 1 < n and text[i + 1] == "*":
                # A block comment that never ends.
                if insert and _comment_ends_line(text, i):
                    kinds.append(Tok.TERMINATOR)
                    offs.append(i)
                    lits.append("\n")
                    insert = False
                    continue
                errs.append((i, "block comment not terminated"))
                lit = text[i:]
                kinds.append(Tok.COMMENT)
                offs.append(i)
                lits.append(_strip_cr(lit) if "\r" in lit else lit)
                insert = False
                i = n
                continue
            kind = OPERATORS[lit]
            kinds.append(kind)
            offs.append(i)
            lits.append(lit)
            insert = kind in _CLOSERS
            i += len(lit)
            continue

        # Rare cases, one character at a time.
        ch = text[i]
        start = i
        if ch == '"':
            i = _scan_quoted(text, i, '"', errs)
            kind = Tok.STRING
            insert = True
        elif ch == "'":
            errs.append((i, "illegal single-quoted string; use double quotes"))
            i = _scan_quoted(text, i, "'", errs)
            kind = Tok.ILLEGAL
            insert = True
        elif ch == "`":
            errs.append((i, "string literal not terminated"))
            i = n
            kind = Tok.STRING
            insert = True
        elif ch == "|" or ch == "&":
            errs.append((i + 1, f"missing second {ch} in {ch}{ch}"))
            i += 1
            kind = Tok.OR if ch == "|" else Tok.AND
            insert = False
        elif _is_letter(ch):
            i = _ident_end(text, i + 1)
            kind = Tok.IDENT
            insert = True
        else:
            # NUL, BOM and undecodable bytes are reported once, by the pass below.
            if not _BAD_CHARS.match(ch):
                errs.append((i, f"illegal character {go_rune(ch)}"))
            i += 1
            kind = Tok.ILLEGAL  # keeps `insert` as it was, like Alloy
        kinds.append(kind)
        offs.append(start)
        lits.append(text[start:i])

    if insert:
        kinds.append(Tok.TERMINATOR)
        offs.append(n)
        lits.append("\n")
    kinds.append(Tok.EOF)
    offs.append(n)
    lits.append("")

    for bad in _BAD_CHARS.finditer(text):
        ch = bad.group()
        if ch == "\x00":
            errs.append((bad.start(), "illegal character NUL"))
        elif ch == "\ufeff":
            if bad.start() > 0:
                errs.append((bad.start(), "illegal byte order mark"))
        else:
            errs.append((bad.start(), "illegal UTF-8 encoding"))
    return out


def _is_letter(ch: str) -> bool:
    return ch == "_" or ch.isalpha()


def _ident_end(text: str, j: int) -> int:
    """Extends an identifier over letters and digits, Unicode ones included."""
    n = len(text)
    while j < n:
        c = text[j]
        if c == "_" or c.isalpha() or c.isdecimal():
            j += 1
        else:
            break
    return j


def _scan_quoted(text: str, start: int, quote: str, errs: list[tuple[int, str]]) -> int:
    """Scans a quoted string from its opening quote; returns the offset after it."""
    n = len(text)
    j = start + 1
    while True:
        if j >= n or text[j] == "\n":
            errs.append((start, "string literal not terminated"))
            return j
        ch = text[j]
        j += 1
        if ch == quote:
            return j
        if ch == "\\":
            j = _scan_escape(text, j, errs)


_ESCAPE_DIGITS = {"x": (2, 16, 255), "u": (4, 16, 0x10FFFF), "U": (8, 16, 0x10FFFF)}


def _scan_escape(text: str, j: int, errs: list[tuple[int, str]]) -> int:
    """Checks the escape whose first character is at ``j``; stops at an offending character."""
    n = len(text)
    off = j
    if j >= n:
        errs.append((off, "escape sequence not terminated"))
        return j
    c = text[j]
    if c in _SIMPLE_ESCAPES:
        return j + 1
    if "0" <= c <= "7":
        count, base, limit = 3, 8, 255
    elif c in _ESCAPE_DIGITS:
        count, base, limit = _ESCAPE_DIGITS[c]
        j += 1
    else:
        errs.append((off, "unknown escape sequence"))
        return j
    value = 0
    for _ in range(count):
        if j >= n:
            errs.append((off, "escape sequence not terminated"))
            return j
        d = _digit_value(text[j])
        if d >= base:
            errs.append((off, f"illegal character {go_rune(text[j])} in escape sequence"))
            return j
        value = value * base + d
        j += 1
    if value > limit or 0xD800 <= value < 0xE000:
        errs.append((off, "escape sequence is invalid Unicode code point"))
    return j


def _digit_value(ch: str) -> int:
    if "0" <= ch <= "9":
        return ord(ch) - 48
    if "a" <= ch <= "f":
        return ord(ch) - 87
    if "A" <= ch <= "F":
        return ord(ch) - 55
    return 16


def _comment_ends_line(text: str, i: int) -> bool:
    """Whether the comment(s) starting at ``i`` run to the end of the line (or file)."""
    n = len(text)
    j = i + 1
    while j < n and (text[j] == "/" or text[j] == "*"):
        if text[j] == "/":
            return True  # a // comment always runs to the end of the line
        close = text.find("*/", j + 1)
        end = n if close < 0 else close + 2
        if text.find("\n", j + 1, end) >= 0:
            return True
        if close < 0:
            return True  # unterminated: runs to the end of the file
        j = end
        while j < n and text[j] in " \t\r":
            j += 1
        if j >= n or text[j] == "\n":
            return True
        if text[j] != "/":
            return False
        j += 1
    return False


def _strip_cr(lit: str) -> str:
    """Drops carriage returns from a comment, as Alloy does for CRLF files."""
    if lit.startswith("//"):
        return lit.replace("\r", "")
    out = []
    for j, ch in enumerate(lit):
        if ch != "\r" or (
            len(out) > 2 and out[-1] == "*" and j + 1 < len(lit) and lit[j + 1] == "/"
        ):
            out.append(ch)
    return "".join(out)
