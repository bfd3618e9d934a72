"""From a string literal's source text to the string it means.

The scanner has already checked that every escape is well formed (and reports
bad ones with a position); this module only computes the value. Alloy strings
are Go strings, i.e. bytes: ``\\xHH`` and octal ``\\NNN`` escapes give single
bytes, so the literal is decoded into bytes first and then read as UTF-8 (a
byte sequence that is not valid UTF-8 becomes U+FFFD, where Go would keep the
raw byte). Raw strings in backticks have no escapes; like Go, carriage returns
inside them are dropped so a file saved with CRLF line endings means the same.
"""

from __future__ import annotations

from functools import lru_cache

_SIMPLE = {
    "a": 0x07,
    "b": 0x08,
    "f": 0x0C,
    "n": 0x0A,
    "r": 0x0D,
    "t": 0x09,
    "v": 0x0B,
    "\\": 0x5C,
    '"': 0x22,
    "'": 0x27,
}
_HEX = frozenset("0123456789abcdefABCDEF")
_OCT = frozenset("01234567")


class UnquoteError(ValueError):
    """A literal the scanner should have rejected; ``offset`` is where in the text."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


@lru_cache(maxsize=8192)
def unquote(text: str) -> str:
    """The value of a ``"double quoted"`` or ```raw``` literal, given with its quotes."""
    if len(text) >= 2 and text[0] == "`" and text[-1] == "`":
        return text[1:-1].replace("\r", "")
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise UnquoteError("string literal must be enclosed in quotes", 0)
    body = text[1:-1]
    if "\\" not in body:
        if '"' in body:
            raise UnquoteError("unescaped quote in string literal", body.index('"') + 1)
        return body
    return _unescape(body)


def _unescape(body: str) -> str:
    out = bytearray()
    i = 0
    n = len(body)
    while i < n:
        j = body.find("\\", i)
        if j < 0:
            out += body[i:].encode("utf-8", "surrogatepass")
            break
        out += body[i:j].encode("utf-8", "surrogatepass")
        if j + 1 >= n:
            raise UnquoteError("escape sequence not terminated", j + 1)
        c = body[j + 1]
        if c in _SIMPLE:
            out.append(_SIMPLE[c])
            i = j + 2
        elif c in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[c]
            digits = body[j + 2 : j + 2 + width]
            if len(digits) != width or not all(d in _HEX for d in digits):
                raise UnquoteError(f"invalid \\{c} escape: expected {width} hex digits", j + 1)
            code = int(digits, 16)
            if c == "x":
                out.append(code)
            else:
                if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                    raise UnquoteError(
                        f"escape \\{c}{digits} is not a valid Unicode code point", j + 1
                    )
                out += chr(code).encode("utf-8")
            i = j + 2 + width
        elif c in _OCT:
            digits = body[j + 1 : j + 4]
            if len(digits) != 3 or not all(d in _OCT for d in digits):
                raise UnquoteError("invalid octal escape: expected 3 octal digits", j + 1)
            code = int(digits, 8)
            if code > 255:
                raise UnquoteError(f"octal escape \\{digits} is greater than 255", j + 1)
            out.append(code)
            i = j + 4
        else:
            raise UnquoteError(f"unknown escape sequence \\{c}", j + 1)
    return out.decode("utf-8", "replace")


def quote(s: str) -> str:
    """Go's ``strconv.Quote``: the double-quoted literal that reads back as ``s``."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch.isprintable():
            out.append(ch)
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\v":
            out.append("\\v")
        elif o < 0x80:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)
