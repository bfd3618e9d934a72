"""Label and field selectors as the API server parses them, so the stand-in filters lists
and watches exactly where a client's selector string would be refused or matched."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Predicate = Callable[[Mapping[str, Any]], bool]

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_TERM = re.compile(
    rf"^\s*(?P<neg>!)?\s*(?P<key>{_KEY})\s*"
    rf"(?:(?P<op>==|!=|=|\s+in\s+|\s+notin\s+)\s*(?P<val>\([^)]*\)|[-A-Za-z0-9_.]*))?\s*$"
)


class SelectorError(ValueError):
    """A selector the real server would answer with 400 BadRequest."""


def _split_terms(text: str) -> list[str]:
    # Commas separate terms except inside the parentheses of a set.
    terms, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(cur)
            cur = ""
        else:
            cur += ch
    terms.append(cur)
    return [t for t in terms if t.strip()]


def parse_label_selector(text: str | None) -> Predicate:
    """A predicate over an object's labels; =, ==, !=, in, notin, exists and !key."""
    if not text:
        return lambda labels: True
    tests: list[Predicate] = []
    for term in _split_terms(text):
        m = _TERM.match(term)
        if not m:
            raise SelectorError(f"unable to parse requirement: {term.strip()!r}")
        neg, key, op, val = m.group("neg"), m.group("key"), m.group("op"), m.group("val")
        op = op.strip() if op else None
        if neg and op:
            raise SelectorError(f"unable to parse requirement: {term.strip()!r}")
        if op in ("in", "notin"):
            if not val or not val.startswith("("):
                raise SelectorError(f"{op} needs a parenthesised set: {term.strip()!r}")
            values = frozenset(v.strip() for v in val[1:-1].split(",") if v.strip())
            if op == "in":
                tests.append(lambda ls, k=key, vs=values: ls.get(k) in vs)
            else:
                tests.append(lambda ls, k=key, vs=values: ls.get(k) not in vs)
        elif op in ("=", "=="):
            if val is None or val.startswith("("):
                raise SelectorError(f"bad value in {term.strip()!r}")
            tests.append(lambda ls, k=key, v=val: ls.get(k) == v)
        elif op == "!=":
            if val is None or val.startswith("("):
                raise SelectorError(f"bad value in {term.strip()!r}")
            tests.append(lambda ls, k=key, v=val: ls.get(k) != v)
        elif neg:
            tests.append(lambda ls, k=key: k not in ls)
        else:
            tests.append(lambda ls, k=key: k in ls)
    return lambda labels: all(t(labels) for t in tests)


# Fields each resource can be selected by (the real server's field label conversions);
# every resource also takes metadata.name and metadata.namespace.
FIELDS: dict[str, frozenset[str]] = {
    "pods": frozenset({
        "spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
        "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName",
    }),
    "nodes": frozenset({"spec.unschedulable"}),
    "secrets": frozenset({"type"}),
    "namespaces": frozenset({"status.phase"}),
}


def field_value(obj: Mapping[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, Mapping) else None
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def parse_field_selector(text: str | None, resource: str) -> Predicate:
    """A predicate over a whole object; =, == and != on the fields the resource supports."""
    if not text:
        return lambda obj: True
    allowed = FIELDS.get(resource, frozenset()) | {"metadata.name", "metadata.namespace"}
    tests: list[Predicate] = []
    for term in _split_terms(text):
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|!=|=)\s*([^,]*?)\s*$", term)
        if not m:
            raise SelectorError(f"invalid selector: {term.strip()!r}")
        field, op, val = m.groups()
        if field not in allowed:
            raise SelectorError(f'field label not supported: {field}')
        if op == "!=":
            tests.append(lambda o, f=field, v=val: field_value(o, f) != v)
        else:
            tests.append(lambda o, f=field, v=val: field_value(o, f) == v)
    return lambda obj: all(t(obj) for t in tests)
