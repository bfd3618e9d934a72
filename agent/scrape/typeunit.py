"""Prometheus 3's type-and-unit labels: ``__type__`` and ``__unit__`` from a series' family.

With Alloy's ``enable_type_and_unit_labels`` (Prometheus' ``type-and-unit-labels``
feature) every scraped series carries its family's TYPE as ``__type__`` (left out when
unknown) and its UNIT as ``__unit__`` (left out when empty), added before metric
relabeling as Prometheus' parsers add them; a label of the same name exposed by the
target gives way to the family's value. A series is matched to its family by name, or
by name less one of the suffixes its type gives series (``_total``, ``_bucket``, ...).

The text parsers record a chunk's comment lines only after resolving its series, so the
families of a text or OpenMetrics body are read by a pre-pass over its ``# TYPE`` and
``# UNIT`` lines (only when the feature is on); the protobuf parser records a family's
metadata before its series, so its live list is read instead.
"""

from __future__ import annotations

import re

TYPE_LABEL = "__type__"
UNIT_LABEL = "__unit__"
_HEADER = re.compile(rb"^[ \t]*#[ \t]+(TYPE|UNIT)[ \t]+(\S+)[ \t]*(\S*)", re.MULTILINE)
_SUFFIXES = ("_total", "_created", "_bucket", "_count", "_sum", "_gcount", "_gsum", "_info")


def header_items(body: bytes) -> list[tuple[str, str, str]]:
    """(kind, family, value) of every TYPE and UNIT line of a text or OpenMetrics body."""
    out = []
    for m in _HEADER.finditer(body):
        kind = m.group(1).decode()
        value = m.group(3).decode("utf-8", "replace")
        if kind == "TYPE" and value == "untyped":
            value = "unknown"
        out.append((kind, m.group(2).decode("utf-8", "replace"), value))
    return out


class Families:
    """Family name -> (type, unit), read from a list of comment entries that may still grow,
    or from a body's header lines, scanned only at the first series not in the scrape
    cache (a scrape whose series are all cached costs nothing)."""

    __slots__ = ("items", "body", "_seen", "_fams")

    def __init__(self, items: list[tuple[str, str, str]] | None = None, body: bytes = b"") -> None:
        self.items = items
        self.body = body
        self._seen = 0
        self._fams: dict[str, list[str]] = {}

    def _catch_up(self) -> None:
        if self.items is None:
            self.items = header_items(self.body)
            self.body = b""
        items = self.items
        for kind, name, value in items[self._seen:]:
            if kind == "HELP":
                continue
            f = self._fams.setdefault(name, ["", ""])
            f[0 if kind == "TYPE" else 1] = value
        self._seen = len(items)

    def labels_for(self, name: str) -> list[tuple[str, str]]:
        """The ``__type__`` / ``__unit__`` pairs of the series ``name`` (none when unknown)."""
        if self.items is None or self._seen != len(self.items):
            self._catch_up()
        fams = self._fams
        f = fams.get(name)
        if f is None:
            for s in _SUFFIXES:
                if name.endswith(s):
                    f = fams.get(name[: -len(s)])
                    if f is not None:
                        break
        if f is None:
            return []
        out = []
        if f[0] and f[0] != "unknown":
            out.append((TYPE_LABEL, f[0]))
        if f[1]:
            out.append((UNIT_LABEL, f[1]))
        return out
