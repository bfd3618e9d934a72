"""Label and field selector syntax, checked when a configuration loads.

Prometheus (and so Alloy) refuses a kubernetes_sd_config whose selectors do
not parse, instead of sending them to the API server and failing every list
with 400; these checks follow apimachinery's grammar (labels.Parse,
fields.ParseSelector) and say what is wrong. Matching is the API server's job.
"""

from __future__ import annotations

import re

_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_KEY = re.compile(rf"^(?:(?P<prefix>{_DNS_LABEL}(?:\.{_DNS_LABEL})*)/)?(?P<name>{_NAME})$")
_VALUE = re.compile(rf"^(?:{_NAME})?$")

_EXISTS = re.compile(r"^\s*(?P<neg>!)?\s*(?P<key>[^\s!=<>(),]+)\s*$")
_EQUALITY = re.compile(r"^\s*(?P<key>[^\s!=<>(),]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=<>(),]*)\s*$")
_SET = re.compile(r"^\s*(?P<key>[^\s!=<>(),]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)\s*$")
_ORDER = re.compile(r"^\s*(?P<key>[^\s!=<>(),]+)\s*(?P<op>[<>])\s*(?P<value>\S+)\s*$")


class SelectorSyntaxError(ValueError):
    pass


def check_label_selector(text: str) -> None:
    """Raise SelectorSyntaxError with the reason if ``text`` is not a label selector."""
    for req in _split(text):
        if m := _EXISTS.match(req):
            _key(m["key"])
        elif m := _EQUALITY.match(req):
            _key(m["key"])
            _value(m["value"])
        elif m := _SET.match(req):
            _key(m["key"])
            values = [v.strip() for v in m["values"].split(",")]
            if values == [""]:
                raise SelectorSyntaxError(f"for '{m['op']}', the set of values can't be empty")
            for v in values:
                _value(v)
        elif m := _ORDER.match(req):
            _key(m["key"])
            if not re.fullmatch(r"-?\d+", m["value"]):
                raise SelectorSyntaxError(f"for '{m['op']}', the value must be an integer, not {m['value']!r}")
        else:
            raise SelectorSyntaxError(f"cannot parse requirement {req.strip()!r}")


def check_field_selector(text: str) -> None:
    """Raise SelectorSyntaxError with the reason if ``text`` is not a field selector."""
    for term in _split_unescaped(text):
        m = re.match(r"^(?P<key>(?:[^\\=!]|\\.)*)(?P<op>==|=|!=)(?P<value>(?:[^\\]|\\.)*)$", term)
        if m is None:
            raise SelectorSyntaxError(f"cannot understand {term!r} (want key=value, key==value or key!=value)")
        if not m["key"]:
            raise SelectorSyntaxError(f"{term!r} has no field name")


def _split(text: str) -> list[str]:
    """Requirements: commas separate them, except inside a set's parentheses."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth < 0:
            raise SelectorSyntaxError("unbalanced ')'")
        if ch == "," and depth == 0:
            out.append(text[start:i])
            start = i + 1
    if depth:
        raise SelectorSyntaxError("unbalanced '('")
    out.append(text[start:])
    if len(out) == 1 and not out[0].strip():
        return []  # the empty selector selects everything
    for req in out:
        if not req.strip():
            raise SelectorSyntaxError("empty requirement between commas")
    return out


def _split_unescaped(text: str) -> list[str]:
    if not text:
        return []
    out, cur, escaped = [], "", False
    for ch in text:
        if escaped:
            cur += "\\" + ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if escaped:
        raise SelectorSyntaxError("a trailing backslash escapes nothing")
    out.append(cur)
    return out


def _key(key: str) -> None:
    m = _KEY.match(key)
    if m is None:
        raise SelectorSyntaxError(
            f"invalid label key {key!r}: a name of alphanumerics, '-', '_' or '.', starting and "
            "ending with an alphanumeric, with an optional DNS subdomain prefix and '/'"
        )
    if len(m["name"]) > 63:
        raise SelectorSyntaxError(f"invalid label key {key!r}: the name is longer than 63 characters")
    if m["prefix"] and len(m["prefix"]) > 253:
        raise SelectorSyntaxError(f"invalid label key {key!r}: the prefix is longer than 253 characters")


def _value(value: str) -> None:
    if len(value) > 63 or not _VALUE.match(value):
        raise SelectorSyntaxError(
            f"invalid label value {value!r}: at most 63 alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric"
        )
