"""The syntax tree of an Alloy file.

Nodes carry positions (excluded from equality, so a tree parsed from a
reformatted file compares equal to the original) and nothing else beyond what
the source said: literals keep their source text, so the printer can write a
raw string or ``1e3`` back as written and the evaluator decides what it means.
Comments are not attached to nodes; they are kept on the file, in source order,
and the printer puts them back by position (as Alloy's printer does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from agent.syntax.diag import NO_POS, Pos


class LitKind(Enum):
    NUMBER = "NUMBER"  # integer literal, e.g. 10
    FLOAT = "FLOAT"  # 15.0, 1e3, .5
    STRING = "STRING"  # "double quoted" or `raw`; value is the source text with its quotes
    BOOL = "BOOL"
    NULL = "NULL"


class BinOp(Enum):
    OR = "||"
    AND = "&&"
    EQ = "=="
    NEQ = "!="
    LT = "<"
    LTE = "<="
    GT = ">"
    GTE = ">="
    ADD = "+"
    SUB = "-"
    MUL = "*"
    DIV = "/"
    MOD = "%"
    POW = "^"


class UnOp(Enum):
    NOT = "!"
    NEG = "-"


# Binding power of each binary operator, lowest first, as Alloy documents it.
# ``^`` is right-associative; all others are left-associative.
PRECEDENCE: dict[BinOp, int] = {
    BinOp.OR: 1,
    BinOp.AND: 2,
    BinOp.EQ: 3,
    BinOp.NEQ: 3,
    BinOp.LT: 3,
    BinOp.LTE: 3,
    BinOp.GT: 3,
    BinOp.GTE: 3,
    BinOp.ADD: 4,
    BinOp.SUB: 4,
    BinOp.MUL: 5,
    BinOp.DIV: 5,
    BinOp.MOD: 5,
    BinOp.POW: 6,
}


def _pos() -> Pos:
    return field(default=NO_POS, compare=False, repr=False)  # type: ignore[return-value]


@dataclass(slots=True)
class Ident:
    name: str
    pos: Pos = _pos()


# ---- expressions -----------------------------------------------------------


@dataclass(slots=True)
class Literal:
    kind: LitKind
    value: str  # source text, quotes included for strings
    pos: Pos = _pos()


@dataclass(slots=True)
class IdentExpr:
    """A bare name: ``foo``. Dotted references are AccessExpr chains on top of one."""

    ident: Ident
    pos: Pos = _pos()


@dataclass(slots=True)
class ArrayExpr:
    elements: list[Expr]
    pos: Pos = _pos()  # the "["
    end: Pos = _pos()  # the "]"


@dataclass(slots=True)
class ObjectField:
    name: str
    quoted: bool  # written as "key" rather than key
    value: Expr
    pos: Pos = _pos()


@dataclass(slots=True)
class ObjectExpr:
    fields: list[ObjectField]
    pos: Pos = _pos()  # the "{"
    end: Pos = _pos()  # the "}"


@dataclass(slots=True)
class AccessExpr:
    """``value.name``"""

    value: Expr
    name: Ident
    pos: Pos = _pos()


@dataclass(slots=True)
class IndexExpr:
    """``value[index]``"""

    value: Expr
    index: Expr
    pos: Pos = _pos()
    end: Pos = _pos()  # the "]"


@dataclass(slots=True)
class CallExpr:
    """``value(args...)``"""

    value: Expr
    args: list[Expr]
    pos: Pos = _pos()
    end: Pos = _pos()  # the ")"


@dataclass(slots=True)
class UnaryExpr:
    op: UnOp
    value: Expr
    pos: Pos = _pos()


@dataclass(slots=True)
class BinaryExpr:
    op: BinOp
    left: Expr
    right: Expr
    pos: Pos = _pos()  # the operator


@dataclass(slots=True)
class ParenExpr:
    inner: Expr
    pos: Pos = _pos()
    end: Pos = _pos()


Expr = (
    Literal
    | IdentExpr
    | ArrayExpr
    | ObjectExpr
    | AccessExpr
    | IndexExpr
    | CallExpr
    | UnaryExpr
    | BinaryExpr
    | ParenExpr
)


# ---- statements ------------------------------------------------------------


@dataclass(slots=True)
class Attribute:
    """``name = value``"""

    name: Ident
    value: Expr
    pos: Pos = _pos()


@dataclass(slots=True)
class Block:
    """``a.b.c "label" { body }``. ``name`` holds the dotted parts."""

    name: list[str]
    label: str | None
    body: list[Stmt]
    pos: Pos = _pos()
    label_pos: Pos = _pos()
    lcurly: Pos = _pos()
    rcurly: Pos = _pos()

    @property
    def full_name(self) -> str:
        return ".".join(self.name)

    @property
    def id(self) -> str:
        """The component ID Alloy gives this block: ``name.parts.label``."""
        return self.full_name + ("." + self.label if self.label else "")


Stmt = Attribute | Block


@dataclass(slots=True)
class Comment:
    text: str  # as written, with its // or /* */
    pos: Pos = _pos()


@dataclass(slots=True)
class File:
    name: str
    body: list[Stmt]
    comments: list[list[Comment]] = field(default_factory=list, compare=False)


def start_pos(node: Expr | Stmt) -> Pos:
    """Where a node begins in the source (a binary expression begins at its left operand)."""
    while isinstance(node, BinaryExpr | AccessExpr | IndexExpr | CallExpr):
        node = node.left if isinstance(node, BinaryExpr) else node.value
    return node.pos
