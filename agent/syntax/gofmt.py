"""Go's ``fmt.Sprintf``, which Alloy's ``string.format`` is.

Alloy hands the arguments to Go as plain Go values (an integer becomes an
``int``, a float a ``float64``, arrays ``[]interface {}``, objects
``map[string]interface {}``), so a verb that does not fit its argument is not
an error but Go's in-band marker, e.g. ``%!d(string=hi)``; a missing argument
gives ``%!d(MISSING)`` and leftover ones ``%!(EXTRA int=1)``. Reproducing
those markers keeps a config's output identical to what Alloy prints.
Secrets are always written as ``(secret)``.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from agent.syntax.strings import quote
from agent.syntax.value import Secret, is_function


class _Spec:
    __slots__ = ("plus", "minus", "sharp", "space", "zero", "width", "prec")

    def __init__(self) -> None:
        self.plus = self.minus = self.sharp = self.space = self.zero = False
        self.width: int | None = None
        self.prec: int | None = None


def go_type(v: Any) -> str:
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list | tuple):
        return "[]interface {}"
    if isinstance(v, dict):
        return "map[string]interface {}"
    if isinstance(v, Secret):
        return "alloytypes.Secret"
    if is_function(v):
        return "func"
    return type(v).__name__


def shortest_g(x: float, upper: bool = False) -> str:
    """``strconv.FormatFloat(x, 'g', -1, 64)``: shortest digits; exponent form below 1e-4 and from 1e6."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    sign = "-" if x < 0 else ""
    d = Decimal(repr(abs(x))).normalize()
    _, digits_t, exp = d.as_tuple()
    digits = "".join(str(c) for c in digits_t)
    nd = len(digits)
    dp = nd + int(exp)
    e = dp - 1
    if e < -4 or e >= 6:
        mant = digits[0] + ("." + digits[1:] if nd > 1 else "")
        es = f"{'-' if e < 0 else '+'}{abs(e):02d}"
        return f"{sign}{mant}{'E' if upper else 'e'}{es}"
    if dp <= 0:
        return f"{sign}0.{'0' * -dp}{digits}"
    if dp >= nd:
        return f"{sign}{digits}{'0' * (dp - nd)}"
    return f"{sign}{digits[:dp]}.{digits[dp:]}"


def _pad(s: str, sp: _Spec, numeric: bool = True) -> str:
    if sp.width is None or len(s) >= sp.width:
        return s
    fill = sp.width - len(s)
    if sp.minus:
        return s + " " * fill
    if sp.zero and (sp.prec is None or not numeric):
        if numeric and s[:1] in "+- ":
            return s[0] + "0" * fill + s[1:]
        return "0" * fill + s
    return " " * fill + s


def _sign(neg: bool, sp: _Spec) -> str:
    if neg:
        return "-"
    if sp.plus:
        return "+"
    if sp.space:
        return " "
    return ""


def _fmt_int(v: int, verb: str, sp: _Spec) -> str | None:
    if verb == "c":
        return _pad(chr(v) if 0 <= v <= 0x10FFFF else "\ufffd", sp, False)
    if verb == "q":
        ch = chr(v) if 0 <= v <= 0x10FFFF else "\ufffd"
        inner = quote(ch)[1:-1].replace('\\"', '"')
        return _pad("'" + ("\\'" if ch == "'" else inner) + "'", sp, False)
    if verb == "U":
        s = f"U+{v:04X}"
        return _pad(s, sp, False)
    bases = {
        "d": (10, ""),
        "v": (10, ""),
        "b": (2, "0b"),
        "o": (8, "0"),
        "O": (8, "0o"),
        "x": (16, "0x"),
        "X": (16, "0X"),
    }
    if verb not in bases:
        return None
    base, prefix = bases[verb]
    a = abs(v)
    digits = {
        10: str,
        2: lambda n: format(n, "b"),
        8: lambda n: format(n, "o"),
        16: lambda n: format(n, "x"),
    }[base](a)
    if verb == "X":
        digits = digits.upper()
    if sp.prec is not None:
        if sp.prec == 0 and a == 0:
            digits = ""
        digits = digits.rjust(sp.prec, "0")
    if (
        verb == "O"
        or (sp.sharp and verb in "bxX")
        or (sp.sharp and verb == "o" and not digits.startswith("0"))
    ):
        digits = prefix + digits
    return _pad(_sign(v < 0, sp) + digits, sp)


def _fmt_float(v: float, verb: str, sp: _Spec) -> str | None:
    if verb not in "vgGeEfF":
        return None
    if math.isnan(v) or math.isinf(v):
        s = "NaN" if math.isnan(v) else ("-Inf" if v < 0 else "+Inf")
        if s == "NaN" and (sp.plus or sp.space):
            s = ("+" if sp.plus else " ") + s
        elif s == "+Inf" and not sp.plus:
            s = " Inf" if sp.space else "+Inf"
        zero, sp.zero = sp.zero, False
        out = _pad(s, sp)
        sp.zero = zero
        return out
    neg = v < 0 or (v == 0 and math.copysign(1.0, v) < 0)
    a = abs(v)
    if verb in "vgG":
        if sp.prec is None:
            body = shortest_g(a, upper=verb == "G")
        else:
            body = format(a, f".{sp.prec}{'G' if verb == 'G' else 'g'}")
    elif verb in "eE":
        body = format(a, f".{6 if sp.prec is None else sp.prec}{verb}")
    else:
        body = format(a, f".{6 if sp.prec is None else sp.prec}f")
    if sp.sharp and "." not in body and "e" not in body.lower():
        body += "."
    return _pad(_sign(neg, sp) + body, sp)


def _fmt_str(s: str, verb: str, sp: _Spec) -> str | None:
    if verb in "sv":
        if sp.prec is not None:
            s = s[: sp.prec]
        return _pad(s, sp, False)
    if verb == "q":
        if sp.prec is not None:
            s = s[: sp.prec]
        if sp.sharp and "`" not in s and all(c.isprintable() or c == "\t" for c in s):
            return _pad("`" + s + "`", sp, False)
        return _pad(quote(s), sp, False)
    if verb in "xX":
        data = s.encode("utf-8")
        if sp.prec is not None:
            data = data[: sp.prec]
        parts = [format(b, "02x" if verb == "x" else "02X") for b in data]
        if sp.sharp:
            parts = [("0x" if verb == "x" else "0X") + p for p in parts] if sp.space else parts
            if not sp.space and parts:
                parts[0] = ("0x" if verb == "x" else "0X") + parts[0]
        return _pad((" " if sp.space else "").join(parts), sp, False)
    return None


def format_value(v: Any, verb: str, sp: _Spec) -> str:
    """One argument under one verb, or Go's ``%!verb(type=value)`` when they do not fit."""
    out: str | None
    if isinstance(v, Secret):
        out = _fmt_str("(secret)", verb, sp) if verb in "svq" else None
    elif v is None:
        out = _pad("<nil>", sp, False) if verb == "v" else None
        if out is None:
            return f"%!{verb}(<nil>)"
    elif isinstance(v, bool):
        out = _pad("true" if v else "false", sp, False) if verb in "tv" else None
    elif isinstance(v, int):
        out = _fmt_int(int(v), verb, sp)
    elif isinstance(v, float):
        out = _fmt_float(float(v), verb, sp)
    elif isinstance(v, str):
        out = _fmt_str(v, verb, sp)
    elif isinstance(v, list | tuple):
        return "[" + " ".join(format_value(x, verb, sp) for x in v) + "]"
    elif isinstance(v, dict):
        return (
            "map["
            + " ".join(
                f"{format_value(k, verb, sp)}:{format_value(v[k], verb, sp)}" for k in sorted(v)
            )
            + "]"
        )
    else:
        out = _pad(f"<{go_type(v)}>", sp, False) if verb == "v" else None
    if out is None:
        return f"%!{verb}({go_type(v)}={format_value(v, 'v', _Spec())})"
    return out


def sprintf(fmt: str, args: list[Any]) -> str:
    out: list[str] = []
    i, n = 0, len(fmt)
    argnum = 0
    reordered = False
    while i < n:
        j = fmt.find("%", i)
        if j < 0:
            out.append(fmt[i:])
            break
        out.append(fmt[i:j])
        i = j + 1
        sp = _Spec()
        while i < n and fmt[i] in "+-# 0":
            c = fmt[i]
            if c == "+":
                sp.plus = True
            elif c == "-":
                sp.minus = True
            elif c == "#":
                sp.sharp = True
            elif c == " ":
                sp.space = True
            else:
                sp.zero = True
            i += 1
        bad_index = False

        def arg_index(i: int) -> int:
            nonlocal argnum, reordered, bad_index
            if i < n and fmt[i] == "[":
                reordered = True
                close = fmt.find("]", i)
                num = fmt[i + 1 : close] if close > 0 else ""
                if close < 0 or not num.isdigit() or not 1 <= int(num) <= len(args):
                    bad_index = True
                    return close + 1 if close > 0 else n
                argnum = int(num) - 1
                return close + 1
            return i

        i = arg_index(i)
        if i < n and fmt[i] == "*":
            i += 1
            if (
                argnum < len(args)
                and isinstance(args[argnum], int)
                and not isinstance(args[argnum], bool)
            ):
                sp.width = int(args[argnum])
                if sp.width < 0:
                    sp.minus, sp.width = True, -sp.width
            else:
                out.append("%!(BADWIDTH)")
            argnum += 1
        else:
            start = i
            while i < n and fmt[i].isdigit():
                i += 1
            if i > start:
                sp.width = int(fmt[start:i])
        if i < n and fmt[i] == ".":
            i += 1
            i = arg_index(i)
            if i < n and fmt[i] == "*":
                i += 1
                if (
                    argnum < len(args)
                    and isinstance(args[argnum], int)
                    and not isinstance(args[argnum], bool)
                ):
                    sp.prec = max(int(args[argnum]), 0)
                else:
                    out.append("%!(BADPREC)")
                argnum += 1
            else:
                start = i
                while i < n and fmt[i].isdigit():
                    i += 1
                sp.prec = int(fmt[start:i]) if i > start else 0
        i = arg_index(i)
        if i >= n:
            out.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        if bad_index:
            out.append(f"%!{verb}(BADINDEX)")
            continue
        if argnum >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        out.append(format_value(args[argnum], verb, sp))
        argnum += 1
    if not reordered and argnum < len(args):
        extra = ", ".join(
            f"{go_type(a)}={format_value(a, 'v', _Spec())}" if a is not None else "<nil>"
            for a in args[argnum:]
        )
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)
