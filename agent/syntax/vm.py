"""The evaluator: an expression and a scope in, a value out, or a positioned error.

It walks the tree directly (a dispatch table keyed by node type; no compile
step), because configurations are evaluated rarely and a 5,000-line file must
still evaluate in a few milliseconds. Literal values are memoised by their
source text, so repeated ``"__address__"`` strings are unquoted once.

Semantics follow Alloy's ``syntax/vm``: both sides of ``&&``/``||`` are
evaluated (no short circuit), ``==`` compares any two values, indexing an
object with a missing key gives null while ``.name`` on a missing key is an
error, and an integer overflow is reported instead of wrapping around as Go
does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from agent.syntax import ast
from agent.syntax.ast import BinOp, LitKind, UnOp
from agent.syntax.diag import Diagnostic, DiagnosticsError, Pos
from agent.syntax.stdlib import STDLIB
from agent.syntax.strings import UnquoteError, unquote
from agent.syntax.value import (
    INT_MIN,
    UINT_MAX,
    CallError,
    ConvertError,
    Function,
    Secret,
    convert,
    format_number,
    is_function,
    type_name,
    values_equal,
)

_MISSING = object()


class Scope:
    """Variables visible to an expression; lookups fall back to the parent, then the stdlib."""

    __slots__ = ("variables", "parent")

    def __init__(
        self, variables: dict[str, Any] | None = None, parent: Scope | None = None
    ) -> None:
        self.variables = variables if variables is not None else {}
        self.parent = parent

    def lookup(self, name: str) -> Any:
        """The value of ``name``, or ``_MISSING``."""
        s: Scope | None = self
        while s is not None:
            v = s.variables.get(name, _MISSING)
            if v is not _MISSING:
                return v
            s = s.parent
        return STDLIB.get(name, _MISSING)

    def __contains__(self, name: str) -> bool:
        return self.lookup(name) is not _MISSING


def _err(node: ast.Expr | ast.Ident, message: str) -> DiagnosticsError:
    pos = node.pos if isinstance(node, ast.Ident) else ast.start_pos(node)
    return DiagnosticsError([Diagnostic(pos, message)])


def evaluate(expr: ast.Expr, scope: Scope) -> Any:
    """The value of ``expr``; raises DiagnosticsError positioned at the offending node."""
    try:
        return _EVAL[type(expr)](expr, scope)
    except RecursionError:
        raise _err(expr, "expression is nested too deeply to evaluate") from None


# ---- literals and containers -----------------------------------------------

_LIT_CACHE: dict[tuple[LitKind, str], Any] = {}


def _parse_int_literal(text: str) -> int | float:
    # Go's strconv.ParseInt(lit, 0, 64), then ParseUint, then ParseFloat: a
    # leading 0 means octal, and a literal that fits no integer is a float.
    t = text.replace("_", "") if "_" in text else text
    try:
        if len(t) > 1 and t[0] == "0" and t[1] not in "xXoObB":
            n = int(t[1:], 8)
        else:
            n = int(t, 0)
    except ValueError:
        return float(t)
    if n > UINT_MAX:
        return float(t)
    return n


def _literal(e: ast.Literal, scope: Scope) -> Any:
    key = (e.kind, e.value)
    v = _LIT_CACHE.get(key, _MISSING)
    if v is not _MISSING:
        return v
    kind = e.kind
    try:
        if kind is LitKind.STRING:
            v = unquote(e.value)
        elif kind is LitKind.NUMBER:
            v = _parse_int_literal(e.value)
        elif kind is LitKind.FLOAT:
            v = float(e.value.replace("_", ""))
        elif kind is LitKind.BOOL:
            if e.value not in ("true", "false"):
                raise ValueError(f"invalid boolean literal {e.value!r}")
            v = e.value == "true"
        elif kind is LitKind.NULL:
            v = None
        else:  # pragma: no cover - LitKind is closed
            raise ValueError(f"unknown literal kind {kind}")
    except (ValueError, UnquoteError) as exc:
        raise _err(e, f"invalid literal {e.value}: {exc}") from None
    if len(_LIT_CACHE) < 65536:
        _LIT_CACHE[key] = v
    return v


def _array(e: ast.ArrayExpr, scope: Scope) -> list[Any]:
    return [_EVAL[type(x)](x, scope) for x in e.elements]


def _object(e: ast.ObjectExpr, scope: Scope) -> dict[str, Any]:
    out = {}
    for f in e.fields:
        v = f.value
        out[f.name] = _EVAL[type(v)](v, scope)
    return out


def _ident(e: ast.IdentExpr, scope: Scope) -> Any:
    v = scope.lookup(e.ident.name)
    if v is _MISSING:
        raise _err(e, f'identifier "{e.ident.name}" does not exist')
    return v


def _paren(e: ast.ParenExpr, scope: Scope) -> Any:
    return _EVAL[type(e.inner)](e.inner, scope)


# ---- access, index, call ---------------------------------------------------


def _access(e: ast.AccessExpr, scope: Scope) -> Any:
    base = _EVAL[type(e.value)](e.value, scope)
    name = e.name.name
    if type(base) is dict or isinstance(base, dict):
        v = base.get(name, _MISSING)
        if v is _MISSING:
            raise _err(e.name, f'field "{name}" does not exist')
        return v
    raise _err(
        e.value,
        f'cannot access field "{name}" on a value of type {type_name(base)}: expected object',
    )


def _index(e: ast.IndexExpr, scope: Scope) -> Any:
    base = _EVAL[type(e.value)](e.value, scope)
    idx = _EVAL[type(e.index)](e.index, scope)
    tb = type_name(base)
    if tb == "array":
        if type_name(idx) != "number":
            raise _err(
                e.index, f"array index must be a number: expected number, got {type_name(idx)}"
            )
        try:
            i = int(idx)
        except (OverflowError, ValueError):
            i = -1
        if i < 0 or i >= len(base):
            raise _err(
                e.index,
                f"index {format_number(idx)} is out of range of array with length {len(base)}",
            )
        return base[i]
    if tb == "object":
        if type(idx) is not str:
            raise _err(
                e.index, f"object key must be a string: expected string, got {type_name(idx)}"
            )
        return base.get(idx)
    raise _err(e.value, f"cannot index a value of type {tb}: expected object or array")


def callee_name(e: ast.Expr) -> str:
    """``string.format`` for the callee of ``string.format(...)``; ``function`` when it has no name."""
    parts: list[str] = []
    while isinstance(e, ast.AccessExpr):
        parts.append(e.name.name)
        e = e.value
    if isinstance(e, ast.IdentExpr):
        parts.append(e.ident.name)
        return ".".join(reversed(parts))
    return "function"


def _call(e: ast.CallExpr, scope: Scope) -> Any:
    fn = _EVAL[type(e.value)](e.value, scope)
    if not is_function(fn):
        raise _err(
            e.value, f"cannot call {callee_name(e.value)}: expected function, got {type_name(fn)}"
        )
    args = [_EVAL[type(a)](a, scope) for a in e.args]
    name = callee_name(e.value)
    if type(fn) is Function:
        params = fn.params
        n, np = len(args), len(params)
        if fn.variadic:
            if n < np - 1:
                raise _err(e, f"{name}: expected at least {np - 1} arguments, got {n}")
        elif n != np:
            raise _err(e, f"{name}: expected {np} argument{'s' if np != 1 else ''}, got {n}")
        for i, a in enumerate(args):
            p = params[i] if i < np else params[-1]
            if p is Any:
                continue
            try:
                args[i] = convert(a, p)
            except ConvertError as exc:
                raise _err(e.args[i], f"{name}: invalid argument {i + 1}: {exc}") from None
        try:
            return fn.impl(*args)
        except CallError as exc:
            at: ast.Expr = e.args[exc.arg] if exc.arg is not None and exc.arg < len(e.args) else e
            raise _err(at, f"{name}: {exc.message}") from None
        except DiagnosticsError:
            raise
        except RecursionError:
            raise
        except Exception as exc:  # noqa: BLE001 - a function's failure is the user's error, positioned
            raise _err(e, f"{name}: {exc}") from None
    try:
        return fn(*args)
    except DiagnosticsError:
        raise
    except CallError as exc:
        at = e.args[exc.arg] if exc.arg is not None and exc.arg < len(e.args) else e
        raise _err(at, f"{name}: {exc.message}") from None
    except Exception as exc:  # noqa: BLE001 - see above
        raise _err(e, f"{name}: {exc}") from None


# ---- operators -------------------------------------------------------------


def _unary(e: ast.UnaryExpr, scope: Scope) -> Any:
    v = _EVAL[type(e.value)](e.value, scope)
    t = type(v)
    if e.op is UnOp.NOT:
        if t is bool:
            return not v
        raise _err(e.value, f"operator ! expects a bool: expected bool, got {type_name(v)}")
    if t is int:
        return _int_result(e, -v)
    if t is float or type_name(v) == "number":
        return -float(v) if isinstance(v, float) else _int_result(e, -int(v))
    raise _err(e.value, f"operator - expects a number: expected number, got {type_name(v)}")


_VERBS = {
    BinOp.ADD: "add",
    BinOp.SUB: "subtract",
    BinOp.MUL: "multiply",
    BinOp.DIV: "divide",
    BinOp.MOD: "take the remainder of",
    BinOp.POW: "raise",
    BinOp.LT: "compare",
    BinOp.LTE: "compare",
    BinOp.GT: "compare",
    BinOp.GTE: "compare",
}


def _int_result(e: ast.Expr, r: int) -> int:
    if r < INT_MIN or r > UINT_MAX:
        raise _err(e, "integer overflow")
    return r


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _int_pow(e: ast.BinaryExpr, n: int, m: int) -> int | float:
    if m < 0:
        return _float_pow(float(n), float(m))
    if m == 0 or n == 1:
        return 1
    if n == 0 or n == -1:
        return n**m
    if m * math.log2(abs(n)) > 65:
        raise _err(e, "integer overflow")
    return _int_result(e, n**m)


def _float_pow(a: float, b: float) -> float:
    try:
        return math.pow(a, b)
    except OverflowError:
        return math.inf
    except ValueError:
        if a == 0:
            return math.inf
        return math.nan


def _numbers(e: ast.BinaryExpr, a: Any, b: Any) -> None:
    """Raise the error for an arithmetic operator given a non-number."""
    for v, node in ((a, e.left), (b, e.right)):
        if type_name(v) != "number":
            raise _err(
                node,
                f"cannot {_VERBS[e.op]} {type_name(a)} and {type_name(b)}: expected number, got {type_name(v)}",
            )


def _arith(e: ast.BinaryExpr, a: Any, b: Any) -> Any:
    op = e.op
    ta, tb = type(a), type(b)
    if not ((ta is int or ta is float) and (tb is int or tb is float)):
        if type_name(a) == "number" and type_name(b) == "number":
            a = float(a) if isinstance(a, float) else int(a)
            b = float(b) if isinstance(b, float) else int(b)
            ta, tb = type(a), type(b)
        else:
            _numbers(e, a, b)
    both_int = ta is int and tb is int
    if op is BinOp.SUB:
        return _int_result(e, a - b) if both_int else float(a) - float(b)
    if op is BinOp.MUL:
        return _int_result(e, a * b) if both_int else float(a) * float(b)
    if op is BinOp.DIV:
        if b == 0:
            raise _err(e.right, "division by zero")
        return _int_result(e, _trunc_div(a, b)) if both_int else float(a) / float(b)
    if op is BinOp.MOD:
        if b == 0:
            raise _err(e.right, "division by zero")
        return a - b * _trunc_div(a, b) if both_int else math.fmod(float(a), float(b))
    if op is BinOp.POW:
        return _int_pow(e, a, b) if both_int else _float_pow(float(a), float(b))
    raise AssertionError(op)  # pragma: no cover


def _add(e: ast.BinaryExpr, a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if ta is int and tb is int:
        return _int_result(e, a + b)
    if ta is str and tb is str:
        return a + b
    na, nb = type_name(a), type_name(b)
    if na == "number" and nb == "number":
        if isinstance(a, float) or isinstance(b, float):
            return float(a) + float(b)
        return _int_result(e, int(a) + int(b))
    if na in ("string", "secret") and nb in ("string", "secret"):
        if na == "secret" or nb == "secret":
            sa = a.reveal() if na == "secret" else a
            sb = b.reveal() if nb == "secret" else b
            return Secret(sa + sb)
        return a + b
    ok = ("number", "string", "secret")
    if na not in ok:
        raise _err(e.left, f"cannot add {na} and {nb}: expected number, string or secret, got {na}")
    if nb not in ok:
        raise _err(
            e.right, f"cannot add {na} and {nb}: expected number, string or secret, got {nb}"
        )
    raise _err(e.right, f"cannot add {na} and {nb}: expected {na}, got {nb}")


def _compare(e: ast.BinaryExpr, a: Any, b: Any) -> bool:
    na, nb = type_name(a), type_name(b)
    if na == nb == "number" or na == nb == "string":
        op = e.op
        if op is BinOp.LT:
            return a < b
        if op is BinOp.LTE:
            return a <= b
        if op is BinOp.GT:
            return a > b
        return a >= b
    for t, node in ((na, e.left), (nb, e.right)):
        if t not in ("number", "string"):
            raise _err(node, f"cannot compare {na} and {nb}: expected number or string, got {t}")
    raise _err(e.right, f"cannot compare {na} and {nb}: expected {na}, got {nb}")


def _logic(e: ast.BinaryExpr, a: Any, b: Any) -> bool:
    if type(a) is not bool:
        raise _err(
            e.left, f"operator {e.op.value} expects bools: expected bool, got {type_name(a)}"
        )
    if type(b) is not bool:
        raise _err(
            e.right, f"operator {e.op.value} expects bools: expected bool, got {type_name(b)}"
        )
    return (a and b) if e.op is BinOp.AND else (a or b)


def _binary(e: ast.BinaryExpr, scope: Scope) -> Any:
    left, right = e.left, e.right
    a = _EVAL[type(left)](left, scope)
    b = _EVAL[type(right)](right, scope)
    op = e.op
    if op is BinOp.ADD:
        return _add(e, a, b)
    if op is BinOp.EQ:
        return values_equal(a, b)
    if op is BinOp.NEQ:
        return not values_equal(a, b)
    if op is BinOp.AND or op is BinOp.OR:
        return _logic(e, a, b)
    if op is BinOp.LT or op is BinOp.LTE or op is BinOp.GT or op is BinOp.GTE:
        return _compare(e, a, b)
    return _arith(e, a, b)


_EVAL: dict[type, Callable[[Any, Scope], Any]] = {
    ast.Literal: _literal,
    ast.IdentExpr: _ident,
    ast.ArrayExpr: _array,
    ast.ObjectExpr: _object,
    ast.AccessExpr: _access,
    ast.IndexExpr: _index,
    ast.CallExpr: _call,
    ast.UnaryExpr: _unary,
    ast.BinaryExpr: _binary,
    ast.ParenExpr: _paren,
}


# ---- references ------------------------------------------------------------


def references(expr: ast.Expr) -> list[tuple[list[str], Pos]]:
    """Every dotted reference in ``expr``: ``a.b.c`` gives ``(["a", "b", "c"], pos of a)``.

    A chain stops at an index or a call (``x.y["k"].z`` gives ``["x", "y"]``);
    the runtime builds its dependency graph from these, filtering out stdlib names.
    """
    out: list[tuple[list[str], Pos]] = []
    stack: list[ast.Expr] = [expr]
    while stack:
        e = stack.pop()
        t = type(e)
        if t is ast.AccessExpr or t is ast.IdentExpr:
            parts: list[str] = []
            node = e
            while type(node) is ast.AccessExpr:
                parts.append(node.name.name)  # type: ignore[union-attr]
                node = node.value  # type: ignore[union-attr]
            if type(node) is ast.IdentExpr:
                parts.append(node.ident.name)  # type: ignore[union-attr]
                parts.reverse()
                out.append((parts, node.pos))
            else:
                stack.append(node)
        elif t is ast.IndexExpr:
            stack.append(e.index)  # type: ignore[union-attr]
            stack.append(e.value)  # type: ignore[union-attr]
        elif t is ast.CallExpr:
            stack.extend(reversed(e.args))  # type: ignore[union-attr]
            stack.append(e.value)  # type: ignore[union-attr]
        elif t is ast.BinaryExpr:
            stack.append(e.right)  # type: ignore[union-attr]
            stack.append(e.left)  # type: ignore[union-attr]
        elif t is ast.UnaryExpr:
            stack.append(e.value)  # type: ignore[union-attr]
        elif t is ast.ParenExpr:
            stack.append(e.inner)  # type: ignore[union-attr]
        elif t is ast.ArrayExpr:
            stack.extend(reversed(e.elements))  # type: ignore[union-attr]
        elif t is ast.ObjectExpr:
            stack.extend(f.value for f in reversed(e.fields))  # type: ignore[union-attr]
    return out
