"""Prometheus relabeling with the exact semantics of ``model/relabel/relabel.go``.

Used for target relabeling (``discovery.relabel``, scrape targets) and metric
relabeling (``prometheus.relabel``, a scrape's metric_relabel rules), so it is on
the hot path of every cache miss. Each rule is compiled once into a plain tuple
(action code, source names, matcher, expansion templates) and ``process`` is one
loop over those tuples working on the sorted label tuple directly: reads are a
``bisect`` into the tuple, writes rebuild it with slicing, and no dict is built.

Regexes use RE2 (google-re2) so a user's pattern can never take exponential
time. The package's ``match()`` wrapper costs several microseconds per call, so
we call the underlying ``RE2.Match`` on UTF-8 bytes ourselves, and skip RE2
altogether for the patterns that dominate real configs: ``(.*)``, ``.*``, ``.+``,
plain literals and alternations of literals.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import re2
from re2 import _re2

from agent.labels import Labels

ACTIONS = (
    "replace",
    "keep",
    "drop",
    "keepequal",
    "dropequal",
    "hashmod",
    "labelmap",
    "labeldrop",
    "labelkeep",
    "lowercase",
    "uppercase",
)

DEFAULT_REGEX = "(.*)"
DEFAULT_REPLACEMENT = "$1"
DEFAULT_SEPARATOR = ";"

# Action codes for the compiled form; ints compare faster than strings.
_REPLACE, _KEEP, _DROP, _KEEPEQ, _DROPEQ, _HASHMOD = 0, 1, 2, 3, 4, 5
_LABELMAP, _LABELDROP, _LABELKEEP, _LOWER, _UPPER = 6, 7, 8, 9, 10
_CODES = {name: i for i, name in enumerate(ACTIONS)}

_ANCHOR_BOTH = _re2.RE2.Anchor.ANCHOR_BOTH
_LEGACY_NAME = re2.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# relabelTargetLegacy: a target_label with $-references under legacy validation.
_LEGACY_TARGET = re2.compile(r"^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$")
_META = set("\\.+*?()|[]{}^$")


def is_valid_label_name(name: str, scheme: str = "utf8") -> bool:
    """UTF-8 validation (Prometheus 3 default) accepts any non-empty name; legacy is ``[a-zA-Z_]\\w*``."""
    if scheme == "legacy":
        return _LEGACY_NAME.fullmatch(name) is not None
    return name != ""


def _var_in_template(s: str) -> bool:
    return "$" in s and _parse_template(s, None) != [s]


@dataclass(frozen=True, slots=True)
class Rule:
    """One relabel rule. Frozen so the compiled form can never go stale."""

    source_labels: list[str] = field(default_factory=list)
    separator: str = DEFAULT_SEPARATOR
    regex: str = DEFAULT_REGEX
    modulus: int = 0
    target_label: str = ""
    replacement: str = DEFAULT_REPLACEMENT
    action: str = "replace"
    # "utf8" (Prometheus 3) or "legacy" (Prometheus 2 / Alloy's [a-zA-Z_]\w* names).
    name_validation: str = "utf8"
    _c: Any = field(default=None, init=False, repr=False, compare=False)

    def validate(self) -> None:
        """Raise ValueError with Prometheus' reason if this rule is not usable."""
        a, tl, scheme = self.action, self.target_label, self.name_validation
        if a == "":
            raise ValueError("relabel action cannot be empty")
        if a not in _CODES:
            raise ValueError(f"unknown relabel action {a!r}")
        if scheme not in ("utf8", "legacy"):
            raise ValueError(f"unknown name validation scheme {scheme!r}")
        if self.modulus < 0:
            raise ValueError("relabel modulus cannot be negative")
        if self.modulus == 0 and a == "hashmod":
            raise ValueError("relabel configuration for hashmod requires non-zero modulus")
        needs_target = a in (
            "replace",
            "hashmod",
            "lowercase",
            "uppercase",
            "keepequal",
            "dropequal",
        )
        if needs_target and tl == "":
            raise ValueError(f"relabel configuration for {a} action requires 'target_label' value")

        def valid_with_vars(v: str) -> bool:
            if scheme == "legacy":
                return _LEGACY_TARGET.fullmatch(v) is not None
            return is_valid_label_name(v, scheme)

        if a == "replace":
            if "$" in tl:
                ok = valid_with_vars(tl)
            else:
                ok = is_valid_label_name(tl, scheme)
            if not ok:
                raise ValueError(f"{_goq(tl)} is invalid 'target_label' for {a} action")
        if a in ("lowercase", "uppercase", "keepequal", "dropequal"):
            if not is_valid_label_name(tl, scheme):
                raise ValueError(f"{_goq(tl)} is invalid 'target_label' for {a} action")
            if self.replacement != DEFAULT_REPLACEMENT:
                raise ValueError(f"'replacement' can not be set for {a} action")
        if a == "labelmap" and not valid_with_vars(self.replacement):
            raise ValueError(f"{_goq(self.replacement)} is invalid 'replacement' for {a} action")
        if a == "hashmod" and not is_valid_label_name(tl, scheme):
            raise ValueError(f"{_goq(tl)} is invalid 'target_label' for {a} action")
        if a in ("keepequal", "dropequal") and (
            self.regex != DEFAULT_REGEX
            or self.modulus != 0
            or self.separator != DEFAULT_SEPARATOR
            or self.replacement != DEFAULT_REPLACEMENT
        ):
            raise ValueError(
                f"{a} action requires only 'source_labels' and `target_label`, and no other fields"
            )
        if a in ("labeldrop", "labelkeep") and (
            self.source_labels
            or tl != ""
            or self.modulus != 0
            or self.separator != DEFAULT_SEPARATOR
            or self.replacement != DEFAULT_REPLACEMENT
        ):
            raise ValueError(f"{a} action requires only 'regex', and no other fields")
        compile_regex(self.regex)

    def compiled(self) -> tuple:
        c = self._c
        if c is None:
            c = _compile_rule(self)
            object.__setattr__(self, "_c", c)
        return c


def _goq(s: str) -> str:
    """Go's %q for the error messages Prometheus prints."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


# ---------------------------------------------------------------- matchers


class Matcher:
    """A fully anchored regex with the cheapest evaluation its pattern allows.

    ``groups(s)`` returns the submatches (index 0 = whole match, "" for groups
    that did not take part) or None; ``test(s)`` only says whether it matches.
    """

    __slots__ = ("pattern", "ngroups", "names", "test", "groups")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.names: dict[str, int] = {}
        self.test: Callable[[str], bool]
        self.groups: Callable[[str], tuple[str, ...] | None]
        if pattern in ("(.*)", "(?s:.*)", "((?s).*)"):
            self.ngroups = 1
            self.test = _always
            self.groups = _whole_twice
            return
        if pattern in (".*", "(?s).*", "(?s:.*)"):
            self.ngroups = 0
            self.test = _always
            self.groups = _whole_once
            return
        if pattern == ".+":
            self.ngroups = 0
            self.test = bool
            self.groups = lambda s: (s,) if s else None
            return
        pre = _literal_prefix(pattern)
        if pre is not None:
            prefix, tail = pre
            k = len(prefix)
            self.ngroups = 0 if tail.startswith(".") else 1
            if tail.endswith("+)") or tail == ".+":
                self.test = lambda s: len(s) > k and s.startswith(prefix)
            else:
                self.test = lambda s: s.startswith(prefix)
            test = self.test
            if self.ngroups:
                self.groups = lambda s: (s, s[k:]) if test(s) else None
            else:
                self.groups = lambda s: (s,) if test(s) else None
            return
        lits = _literal_alternatives(pattern)
        if lits is not None:
            alts, wrapped = lits
            self.ngroups = 1 if wrapped else 0
            if len(alts) == 1:
                lit = alts[0]
                self.test = lit.__eq__
            else:
                self.test = frozenset(alts).__contains__
            test = self.test
            if wrapped:
                self.groups = lambda s: (s, s) if test(s) else None
            else:
                self.groups = lambda s: (s,) if test(s) else None
            return
        rx = compile_regex(pattern)
        self.ngroups = rx.NumberOfCapturingGroups()
        self.names = {n.decode(): i for n, i in rx.NamedCapturingGroups()}
        match = rx.Match
        nspans = self.ngroups + 1

        def test(s: str) -> bool:
            b = s.encode()
            return match(_ANCHOR_BOTH, b, 0, len(b))[0][0] >= 0

        def groups(s: str) -> tuple[str, ...] | None:
            b = s.encode()
            spans = match(_ANCHOR_BOTH, b, 0, len(b))
            if spans[0][0] < 0:
                return None
            if len(b) == len(s):
                return tuple(s[x:y] if x >= 0 else "" for x, y in spans[:nspans])
            return tuple(b[x:y].decode() if x >= 0 else "" for x, y in spans[:nspans])

        self.test = test
        self.groups = groups


def _always(s: str) -> bool:
    return True


def _whole_twice(s: str) -> tuple[str, ...]:
    return (s, s)


def _whole_once(s: str) -> tuple[str, ...]:
    return (s,)


def _literal_prefix(p: str) -> tuple[str, str] | None:
    """``lit.*``, ``lit.+``, ``lit(.*)`` or ``lit(.+)`` (dot matches newline here), else None."""
    for tail in ("(.*)", "(.+)", ".*", ".+"):
        if p.endswith(tail) and len(p) > len(tail):
            head = p[: -len(tail)]
            if not any(ch in _META for ch in head):
                return head, tail
    return None


def _literal_alternatives(p: str) -> tuple[list[str], bool] | None:
    """``a|b|c`` or ``(a|b|c)`` with no other metacharacters, else None."""
    wrapped = False
    inner = p
    if p.startswith("(") and p.endswith(")") and not p.startswith("(?"):
        inner = p[1:-1]
        wrapped = True
    if any(ch in _META for ch in inner.replace("|", "")):
        return None
    return inner.split("|"), wrapped


def compile_regex(pattern: str) -> Any:
    """Compile as Prometheus does: ``^(?s:pattern)$``. Raises ValueError with RE2's reason."""
    opts = re2.Options()
    opts.log_errors = False
    try:
        rx = _re2.RE2(("^(?s:" + pattern + ")$").encode(), opts)
    except Exception as exc:  # noqa: BLE001 - pybind error type is private
        raise ValueError(f"invalid regex {pattern!r}: {exc}") from None
    if not rx.ok():
        raise ValueError(f"invalid regex {pattern!r}: {rx.error()}")
    return rx


# ---------------------------------------------------------------- templates


def _parse_template(t: str, names: dict[str, int] | None) -> list[str | int]:
    """Split a Go ``Regexp.Expand`` template into literals and group indexes (-1 = empty).

    With ``names`` None, named references are kept as -2 so callers can tell a
    template has variables without knowing the regex.
    """
    out: list[str | int] = []
    lit: list[str] = []
    i, n = 0, len(t)
    while i < n:
        j = t.find("$", i)
        if j < 0:
            lit.append(t[i:])
            break
        lit.append(t[i:j])
        i = j + 1
        if i < n and t[i] == "$":
            lit.append("$")
            i += 1
            continue
        ref = _extract(t, i)
        if ref is None:
            lit.append("$")
            continue
        name, i = ref
        if lit:
            s = "".join(lit)
            if s:
                out.append(s)
            lit = []
        num = _group_number(name)
        if num >= 0:
            out.append(num)
        elif names is None:
            out.append(-2)
        else:
            out.append(names.get(name, -1))
    s = "".join(lit)
    if s:
        out.append(s)
    return out


def _extract(t: str, i: int) -> tuple[str, int] | None:
    n = len(t)
    brace = i < n and t[i] == "{"
    if brace:
        i += 1
    j = i
    while j < n and (t[j].isalpha() or t[j].isdecimal() or t[j] == "_"):
        j += 1
    if j == i:
        return None
    name = t[i:j]
    if brace:
        if j >= n or t[j] != "}":
            return None
        j += 1
    return name, j


def _group_number(name: str) -> int:
    if not name.isascii() or not name.isdigit() or len(name) > 8:
        return -1
    if name[0] == "0" and len(name) > 1:
        return -1
    return int(name)


def _expander(template: str, m: Matcher) -> Callable[[tuple[str, ...]], str]:
    parts = _parse_template(template, m.names)
    ng = m.ngroups
    parts = [p if isinstance(p, str) or p <= ng else -1 for p in parts]
    if not parts:
        return lambda g: ""
    if len(parts) == 1:
        p = parts[0]
        if isinstance(p, str):
            return lambda g: p
        if p < 0:
            return lambda g: ""
        return lambda g: g[p]
    fixed = tuple(parts)

    def expand(g: tuple[str, ...]) -> str:
        return "".join([p if p.__class__ is str else (g[p] if p >= 0 else "") for p in fixed])

    return expand


# ---------------------------------------------------------------- compile + process


def _compile_rule(r: Rule) -> tuple:
    code = _CODES.get(r.action)
    if code is None:
        raise ValueError(f"unknown relabel action {r.action!r}")
    m = Matcher(r.regex)
    tl_static = not _var_in_template(r.target_label)
    target = _expander(r.target_label, m)
    repl = _expander(r.replacement, m)
    scheme = r.name_validation
    return (
        code,
        tuple(r.source_labels),
        r.separator,
        m,
        r.target_label,
        tl_static,
        target,
        repl,
        r.modulus,
        scheme,
    )


def _get(labels: Labels, name: str) -> str:
    i = bisect_left(labels, (name,))
    if i < len(labels):
        p = labels[i]
        if p[0] == name:
            return p[1]
    return ""


def _set(labels: Labels, name: str, value: str) -> Labels:
    i = bisect_left(labels, (name,))
    if i < len(labels) and labels[i][0] == name:
        if value == "":
            return labels[:i] + labels[i + 1 :]
        if labels[i][1] == value:
            return labels
        return labels[:i] + ((name, value),) + labels[i + 1 :]
    if value == "":
        return labels
    return labels[:i] + ((name, value),) + labels[i:]


def _value(labels: Labels, sources: tuple[str, ...], sep: str) -> str:
    if len(sources) == 1:
        return _get(labels, sources[0])
    return sep.join([_get(labels, s) for s in sources])


def process(labels: Labels, rules: Sequence[Rule]) -> Labels | None:
    """Apply ``rules`` in order; None when a keep/drop rule drops the set."""
    for rule in rules:
        c = rule._c
        if c is None:
            c = rule.compiled()
        code = c[0]
        if code == _REPLACE:
            val = _value(labels, c[1], c[2])
            g = c[3].groups(val)
            if g is None:
                continue
            target = c[4] if c[5] else c[6](g)
            if not is_valid_label_name(target, c[9]):
                continue
            labels = _set(labels, target, c[7](g))
        elif code == _KEEP:
            if not c[3].test(_value(labels, c[1], c[2])):
                return None
        elif code == _DROP:
            if c[3].test(_value(labels, c[1], c[2])):
                return None
        elif code == _LABELDROP:
            test = c[3].test
            labels = tuple([p for p in labels if not test(p[0])])
        elif code == _LABELKEEP:
            test = c[3].test
            labels = tuple([p for p in labels if test(p[0])])
        elif code == _LABELMAP:
            groups, repl = c[3].groups, c[7]
            out = labels
            for n, v in labels:
                g = groups(n)
                if g is not None:
                    new = repl(g)
                    if new:
                        out = _set(out, new, v)
            labels = out
        elif code == _KEEPEQ:
            if _get(labels, c[4]) != _value(labels, c[1], c[2]):
                return None
        elif code == _DROPEQ:
            if _get(labels, c[4]) == _value(labels, c[1], c[2]):
                return None
        elif code == _HASHMOD:
            digest = hashlib.md5(_value(labels, c[1], c[2]).encode()).digest()
            labels = _set(labels, c[4], str(int.from_bytes(digest[8:], "big") % c[8]))
        elif code == _LOWER:
            labels = _set(labels, c[4], _value(labels, c[1], c[2]).lower())
        elif code == _UPPER:
            labels = _set(labels, c[4], _value(labels, c[1], c[2]).upper())
    return labels


def validate_all(rules: Sequence[Rule]) -> None:
    """Validate every rule; the message names the rule's position (1-based)."""
    for i, r in enumerate(rules, 1):
        try:
            r.validate()
        except ValueError as exc:
            raise ValueError(f"rule {i}: {exc}") from None
