"""Alloy values as plain Python objects, and conversion between them and typed fields.

Values stay native so the evaluator is cheap and the runtime can hand over its
exports without wrapping: ``None`` is null, ``bool``, ``int``/``float`` are
numbers, ``str``, ``list`` (or tuple) is an array, ``dict[str, Any]`` an
object, a Python function or :class:`Function` a function, :class:`Secret` a
secret, and anything else a capsule (an opaque object such as a receiver).

Numbers follow Alloy: an integer stays an integer through ``+ - * / % ^``
(``/`` truncates toward zero, ``%`` takes the dividend's sign, as in Go) and
mixing in a float gives a float.

:func:`convert` is the one place where a value meets a Python type, used by
the standard library for its arguments and by :mod:`agent.syntax.decode` for
component arguments; it applies Alloy's conversions (a number where a string
is expected becomes its decimal text, a numeric string where a number is
expected is parsed, a string where a secret is expected becomes a secret, but
a secret never silently becomes a string).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from decimal import Decimal
from functools import partial
from typing import Any

from agent.syntax.strings import quote

INT_MIN = -(2**63)
UINT_MAX = 2**64 - 1

# ---- secrets ---------------------------------------------------------------


class Secret:
    """A string that must not be shown: every way of printing it gives ``(secret)``.

    Not a ``str`` subclass on purpose: a subclass would leak through ``json``,
    concatenation and C-level string handling. ``reveal()`` is the one way in.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        object.__setattr__(
            self, "_value", str(value) if not isinstance(value, Secret) else value._value
        )

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "(secret)"

    def __repr__(self) -> str:
        return "Secret((secret))"

    def __format__(self, spec: str) -> str:
        return format("(secret)", spec)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("secret", self._value))

    def __len__(self) -> int:
        return len(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Secret is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        return (Secret, (self._value,))


# ---- functions -------------------------------------------------------------


class Function:
    """A function the language can call, with declared parameter types.

    ``params`` are Python types for :func:`convert` (``Any`` for no
    conversion); with ``variadic`` the last one repeats. Errors raised by the
    implementation as :class:`CallError` are positioned by the evaluator at the
    argument they name.
    """

    __slots__ = ("name", "impl", "params", "variadic")

    def __init__(
        self, name: str, impl: typing.Callable[..., Any], params: list[Any], variadic: bool = False
    ) -> None:
        self.name = name
        self.impl = impl
        self.params = params
        self.variadic = variadic

    def __call__(self, *args: Any) -> Any:
        return self.impl(*args)

    def __repr__(self) -> str:
        return f"<function {self.name}>"


class CallError(Exception):
    """A function refused its arguments; ``arg`` is the index of the one at fault, if any."""

    def __init__(self, message: str, arg: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.arg = arg


_FUNCTION_TYPES = (
    Function,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.BuiltinMethodType,
    partial,
)


def is_function(v: object) -> bool:
    return isinstance(v, _FUNCTION_TYPES)


# ---- durations -------------------------------------------------------------

_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    # Prometheus' duration units, accepted as well (Go's time.ParseDuration has none of them).
    "d": 86_400_000_000_000,
    "w": 604_800_000_000_000,
    "y": 31_536_000_000_000_000,
}
_MAX_NS = 2**63 - 1


class DurationError(ValueError):
    pass


def parse_duration_ns(s: str) -> int:
    """Go's ``time.ParseDuration`` (plus ``d``, ``w``, ``y``), in integer nanoseconds."""
    orig = s
    if not s:
        raise DurationError(f'invalid duration "{orig}"')
    neg = False
    if s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise DurationError(f'invalid duration "{orig}"')
    total = 0
    i, n = 0, len(s)
    while i < n:
        start = i
        while i < n and s[i].isascii() and s[i].isdigit():
            i += 1
        whole = s[start:i]
        frac = ""
        if i < n and s[i] == ".":
            i += 1
            fstart = i
            while i < n and s[i].isascii() and s[i].isdigit():
                i += 1
            frac = s[fstart:i]
        if not whole and not frac:
            raise DurationError(f'invalid duration "{orig}"')
        ustart = i
        while i < n and s[i] != "." and not (s[i].isascii() and s[i].isdigit()):
            i += 1
        unit = s[ustart:i]
        if not unit:
            raise DurationError(f'missing unit in duration "{orig}"')
        mult = _UNIT_NS.get(unit)
        if mult is None:
            raise DurationError(f'unknown unit "{unit}" in duration "{orig}"')
        part = int(whole or "0") * mult
        if frac:
            part += int(frac) * mult // 10 ** len(frac)
        total += part
        if total > _MAX_NS:
            raise DurationError(f'invalid duration "{orig}": out of range')
    return -total if neg else total


def _frac(v: int, digits: int) -> str:
    whole, rest = divmod(v, 10**digits)
    if rest == 0:
        return str(whole)
    return f"{whole}." + f"{rest:0{digits}d}".rstrip("0")


def format_duration_ns(ns: int) -> str:
    """Go's ``time.Duration.String``: ``1h0m0s``, ``1m30s``, ``1.5s``, ``500ms``, ``0s``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 1_000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        return f"{sign}{_frac(u, 3)}\u00b5s"
    if u < 1_000_000_000:
        return f"{sign}{_frac(u, 6)}ms"
    secs, nanos = divmod(u, 1_000_000_000)
    out = _frac(secs % 60 * 1_000_000_000 + nanos, 9) + "s"
    if secs >= 60:
        out = f"{secs // 60 % 60}m" + out
    if secs >= 3600:
        out = f"{secs // 3600}h" + out
    return sign + out


class Duration(float):
    """Seconds, as a float; a schema field of this type takes Alloy duration strings.

    ``Duration("1m30s") == 90.0``; ``str()`` gives Go's spelling back (``1m30s``).
    """

    def __new__(cls, value: float | str = 0.0) -> Duration:
        if isinstance(value, str):
            return float.__new__(cls, parse_duration_ns(value) / 1e9)
        return float.__new__(cls, value)

    @property
    def ns(self) -> int:
        return round(float(self) * 1e9)

    def __str__(self) -> str:
        return format_duration_ns(self.ns)

    def __repr__(self) -> str:
        return f"Duration({str(self)!r})"


# ---- type names, equality, text --------------------------------------------


def type_name(v: object) -> str:
    """Alloy's name for the type of ``v``."""
    t = type(v)
    if v is None:
        return "null"
    if t is bool:
        return "bool"
    if t is int or t is float or t is Duration:
        return "number"
    if t is str:
        return "string"
    if t is list or t is tuple:
        return "array"
    if t is dict:
        return "object"
    if t is Secret:
        return "secret"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list | tuple):
        return "array"
    if isinstance(v, dict):
        return "object"
    if is_function(v):
        return "function"
    return "capsule"


def is_number(v: object) -> bool:
    t = type(v)
    return t is int or t is float or (t is not bool and isinstance(v, int | float))


def values_equal(a: Any, b: Any) -> bool:
    """Alloy's ``==``: values of different types are never equal; ``3 == 3.0``; functions never equal."""
    ta, tb = type_name(a), type_name(b)
    if ta == "secret" and tb == "string":
        return a.reveal() == b
    if ta == "string" and tb == "secret":
        return a == b.reveal()
    if ta != tb:
        return False
    if ta == "array":
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b, strict=True))
    if ta == "object":
        if len(a) != len(b):
            return False
        for k, v in a.items():
            if k not in b or not values_equal(v, b[k]):
                return False
        return True
    if ta == "function":
        return False
    if ta == "capsule":
        try:
            return bool(a is b or a == b)
        except Exception:  # noqa: BLE001 - a capsule's __eq__ is not ours to trust
            return False
    return bool(a == b)


def format_number(v: int | float) -> str:
    """A number as Alloy turns it into a string: Go's ``FormatFloat(f, 'f', -1, 64)`` for floats."""
    if isinstance(v, bool):
        raise TypeError("bool is not a number")
    if isinstance(v, int):
        return str(int(v))
    f = float(v)
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    s = repr(f)
    if "e" in s or "E" in s:
        return format(Decimal(s), "f")
    if s.endswith(".0"):
        return s[:-2]
    return s


def to_alloy(v: Any) -> str:
    """A value written as Alloy would print it; secrets and capsules stay opaque."""
    t = type_name(v)
    if t == "null":
        return "null"
    if t == "bool":
        return "true" if v else "false"
    if t == "number":
        return format_number(v)
    if t == "string":
        return quote(v)
    if t == "array":
        return "[" + ", ".join(to_alloy(x) for x in v) + "]"
    if t == "object":
        if not v:
            return "{}"
        return "{" + ", ".join(f"{quote(k)} = {to_alloy(x)}" for k, x in v.items()) + "}"
    if t == "secret":
        return "(secret)"
    if t == "function":
        return "function"
    return f"capsule({quote(type(v).__name__)})"


def parse_number(s: str) -> int | float:
    """Alloy's string-to-number conversion; raises ValueError."""
    if not s:
        raise ValueError("empty string")
    if s[0] == "-":
        if any(c in s for c in ".eE"):
            # Alloy (ParseInt on any leading "-") rejects "-1.5"; accepting it is the kinder reading.
            if "_" in s or s.strip() != s or s[1:2] in ("-", "+"):
                raise ValueError(s)
            return float(s)
        if not s[1:].isascii() or not s[1:].isdigit():
            raise ValueError(s)
        n = int(s, 10)
        if n < INT_MIN:
            raise ValueError(s)
        return n
    if any(c in s for c in ".eE"):
        if "_" in s or s.strip() != s:
            raise ValueError(s)
        return float(s)
    if not s.isascii() or not s.isdigit():
        raise ValueError(s)
    n = int(s, 10)
    if n > UINT_MAX:
        raise ValueError(s)
    return n


# ---- conversion to Python types --------------------------------------------


class ConvertError(Exception):
    """``value`` did not fit ``type``; ``path`` says where inside it (``[2].name``)."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def within(self, step: str) -> ConvertError:
        return ConvertError(self.message, step + self.path)


def _key_step(k: str) -> str:
    return f".{k}" if k.isidentifier() else f"[{quote(k)}]"


_NONE_TYPE = type(None)
_ZERO: dict[Any, Any] = {str: "", int: 0, float: 0.0, bool: False, Duration: Duration(0.0)}


def type_label(typ: Any) -> str:
    """How a Python field type is named in error messages, in Alloy's words."""
    if typ is Any or typ is object:
        return "any"
    if typ is str:
        return "string"
    if typ is int or typ is float:
        return "number"
    if typ is bool:
        return "bool"
    if typ is Duration:
        return "duration"
    if typ is Secret:
        return "secret"
    origin = typing.get_origin(typ)
    if origin is list or origin is tuple:
        return "array"
    if origin is dict or typ is dict:
        return "object"
    if typ is list:
        return "array"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_label(a) for a in typing.get_args(typ) if a is not _NONE_TYPE)
    if origin is typing.Literal:
        return "string"
    if dataclasses.is_dataclass(typ):
        return "object"
    return f"capsule({quote(getattr(typ, '__name__', str(typ)))})"


def _protocol_ok(v: object, typ: type) -> bool:
    try:
        return isinstance(v, typ)
    except TypeError:
        # A Protocol that is not runtime_checkable: check its public members by name.
        names = [n for n in vars(typ) if not n.startswith("_")]
        return all(hasattr(v, n) for n in names)


def convert(v: Any, typ: Any) -> Any:
    """``v`` as a value of Python type ``typ`` (see the module docstring); raises ConvertError."""
    if typ is Any or typ is object:
        return v
    if v is None:
        origin = typing.get_origin(typ)
        if origin in (typing.Union, types.UnionType) and _NONE_TYPE in typing.get_args(typ):
            return None
        if typ in _ZERO:
            return _ZERO[typ]
        if origin is list or typ is list:
            return []
        if origin is dict or typ is dict:
            return {}
        return None
    if typ is str:
        if type(v) is str:
            return v
        if is_number(v):
            return format_number(v)
        raise ConvertError(f"expected string, got {type_name(v)}")
    if typ is int:
        if is_number(v):
            if isinstance(v, float):
                if not v.is_integer():
                    raise ConvertError(f"expected an integer, got {format_number(v)}")
                return int(v)
            return int(v)
        if type(v) is str:
            try:
                n = parse_number(v)
            except ValueError:
                raise ConvertError(f"expected number, got string {quote(v)}") from None
            return convert(n, int)
        raise ConvertError(f"expected number, got {type_name(v)}")
    if typ is float:
        if is_number(v):
            return float(v)
        if type(v) is str:
            try:
                return float(parse_number(v))
            except ValueError:
                raise ConvertError(f"expected number, got string {quote(v)}") from None
        raise ConvertError(f"expected number, got {type_name(v)}")
    if typ is bool:
        if type(v) is bool:
            return v
        raise ConvertError(f"expected bool, got {type_name(v)}")
    if typ is Duration:
        if type(v) is Duration:
            return v
        if type(v) is str or is_number(v):
            s = v if type(v) is str else format_number(v)
            try:
                return Duration(parse_duration_ns(s) / 1e9)
            except DurationError as exc:
                raise ConvertError(str(exc)) from None
        raise ConvertError(f"expected duration string, got {type_name(v)}")
    if typ is Secret:
        if type(v) is Secret:
            return v
        if type(v) is str:
            return Secret(v)
        raise ConvertError(f"expected secret or string, got {type_name(v)}")
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(typ) if a is not _NONE_TYPE]
        if len(members) == 1:
            return convert(v, members[0])
        for m in members:
            try:
                return convert(v, m)
            except ConvertError:
                continue
        raise ConvertError(f"expected {type_label(typ)}, got {type_name(v)}")
    if origin is list or typ is list:
        if type_name(v) != "array":
            raise ConvertError(f"expected array, got {type_name(v)}")
        args = typing.get_args(typ)
        elem = args[0] if args else Any
        if elem is Any:
            return list(v)
        out = []
        for i, x in enumerate(v):
            try:
                out.append(convert(x, elem))
            except ConvertError as exc:
                raise exc.within(f"[{i}]") from None
        return out
    if origin is dict or typ is dict:
        if type_name(v) != "object":
            raise ConvertError(f"expected object, got {type_name(v)}")
        args = typing.get_args(typ)
        elem = args[1] if len(args) == 2 else Any
        if elem is Any:
            return dict(v)
        res = {}
        for k, x in v.items():
            try:
                res[k] = convert(x, elem)
            except ConvertError as exc:
                raise exc.within(_key_step(k)) from None
        return res
    if origin is typing.Literal:
        allowed = typing.get_args(typ)
        s = convert(v, str)
        if s not in allowed:
            choices = ", ".join(quote(str(a)) for a in allowed)
            raise ConvertError(f"expected one of {choices}, got {quote(s)}")
        return s
    if dataclasses.is_dataclass(typ) and isinstance(typ, type):
        if isinstance(v, typ):
            return v
        if type_name(v) != "object":
            raise ConvertError(f"expected object, got {type_name(v)}")
        # Imported here because agent.syntax.decode imports this module (a real cycle).
        from agent.syntax.decode import object_to_dataclass

        return object_to_dataclass(v, typ)
    if isinstance(typ, type):
        if _protocol_ok(v, typ):
            return v
        raise ConvertError(f"expected {type_label(typ)}, got {type_name(v)}")
    raise ConvertError(f"unsupported field type {typ!r}")
