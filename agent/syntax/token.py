"""The lexical tokens of the Alloy language.

Token names are the ones Alloy prints in its error messages ("expected IDENT,
got BOOL", "expected {, got STRING"), so the parser can phrase errors exactly
as Alloy does and users searching for a message find Alloy's answers.
"""

from __future__ import annotations

from enum import IntEnum

from agent.syntax.ast import BinOp, LitKind, UnOp


class Tok(IntEnum):
    ILLEGAL = 0
    EOF = 1
    COMMENT = 2
    IDENT = 3
    NUMBER = 4
    FLOAT = 5
    STRING = 6
    BOOL = 7
    NULL = 8
    OR = 9
    AND = 10
    NOT = 11
    ASSIGN = 12
    EQ = 13
    NEQ = 14
    LT = 15
    LTE = 16
    GT = 17
    GTE = 18
    ADD = 19
    SUB = 20
    MUL = 21
    DIV = 22
    MOD = 23
    POW = 24
    LCURLY = 25
    RCURLY = 26
    LPAREN = 27
    RPAREN = 28
    LBRACK = 29
    RBRACK = 30
    COMMA = 31
    DOT = 32
    TERMINATOR = 33

    def __str__(self) -> str:
        return NAMES[self]


NAMES: dict[Tok, str] = {
    Tok.ILLEGAL: "ILLEGAL",
    Tok.EOF: "EOF",
    Tok.COMMENT: "COMMENT",
    Tok.IDENT: "IDENT",
    Tok.NUMBER: "NUMBER",
    Tok.FLOAT: "FLOAT",
    Tok.STRING: "STRING",
    Tok.BOOL: "BOOL",
    Tok.NULL: "NULL",
    Tok.OR: "||",
    Tok.AND: "&&",
    Tok.NOT: "!",
    Tok.ASSIGN: "=",
    Tok.EQ: "==",
    Tok.NEQ: "!=",
    Tok.LT: "<",
    Tok.LTE: "<=",
    Tok.GT: ">",
    Tok.GTE: ">=",
    Tok.ADD: "+",
    Tok.SUB: "-",
    Tok.MUL: "*",
    Tok.DIV: "/",
    Tok.MOD: "%",
    Tok.POW: "^",
    Tok.LCURLY: "{",
    Tok.RCURLY: "}",
    Tok.LPAREN: "(",
    Tok.RPAREN: ")",
    Tok.LBRACK: "[",
    Tok.RBRACK: "]",
    Tok.COMMA: ",",
    Tok.DOT: ".",
    Tok.TERMINATOR: "TERMINATOR",
}

# Operator and punctuation spellings, for the scanner.
OPERATORS: dict[str, Tok] = {
    name: tok for tok, name in NAMES.items() if tok >= Tok.OR and tok <= Tok.DOT
}

KEYWORDS: dict[str, Tok] = {"true": Tok.BOOL, "false": Tok.BOOL, "null": Tok.NULL}

BINARY_OPS: dict[Tok, BinOp] = {
    Tok.OR: BinOp.OR,
    Tok.AND: BinOp.AND,
    Tok.EQ: BinOp.EQ,
    Tok.NEQ: BinOp.NEQ,
    Tok.LT: BinOp.LT,
    Tok.LTE: BinOp.LTE,
    Tok.GT: BinOp.GT,
    Tok.GTE: BinOp.GTE,
    Tok.ADD: BinOp.ADD,
    Tok.SUB: BinOp.SUB,
    Tok.MUL: BinOp.MUL,
    Tok.DIV: BinOp.DIV,
    Tok.MOD: BinOp.MOD,
    Tok.POW: BinOp.POW,
}

# Binding power of binary operators; 0 for every other token.
BINARY_PRECEDENCE: dict[Tok, int] = {
    Tok.OR: 1,
    Tok.AND: 2,
    Tok.EQ: 3,
    Tok.NEQ: 3,
    Tok.LT: 3,
    Tok.LTE: 3,
    Tok.GT: 3,
    Tok.GTE: 3,
    Tok.ADD: 4,
    Tok.SUB: 4,
    Tok.MUL: 5,
    Tok.DIV: 5,
    Tok.MOD: 5,
    Tok.POW: 6,
}

UNARY_OPS: dict[Tok, UnOp] = {Tok.NOT: UnOp.NOT, Tok.SUB: UnOp.NEG}

LITERAL_KINDS: dict[Tok, LitKind] = {
    Tok.NUMBER: LitKind.NUMBER,
    Tok.FLOAT: LitKind.FLOAT,
    Tok.STRING: LitKind.STRING,
    Tok.BOOL: LitKind.BOOL,
    Tok.NULL: LitKind.NULL,
}

# Tokens after which a newline ends the statement (Alloy's automatic terminators).
ENDS_LINE: frozenset[Tok] = frozenset(
    {
        Tok.IDENT,
        Tok.NUMBER,
        Tok.FLOAT,
        Tok.STRING,
        Tok.BOOL,
        Tok.NULL,
        Tok.RCURLY,
        Tok.RPAREN,
        Tok.RBRACK,
    }
)


def go_quote(s: str) -> str:
    """``s`` double-quoted the way Go's ``%q`` does, which is how Alloy quotes text in messages."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif 0xDC80 <= o <= 0xDCFF:  # an undecodable byte kept by surrogateescape
            out.append(f"\\x{o - 0xDC00:02x}")
        elif ch.isprintable():
            out.append(ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def go_rune(ch: str) -> str:
    """A character the way Go's ``%#U`` prints it: ``U+0040 '@'``."""
    o = ord(ch)
    if 0xD800 <= o <= 0xDFFF:
        o = 0xFFFD
        ch = "\ufffd"
    code = f"U+{o:04X}"
    return f"{code} '{ch}'" if ch.isprintable() else code
