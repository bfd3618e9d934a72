"""What every role's target builder shares: target groups, label names, and a forgiving reader.

The builders read the JSON objects the API server returns. client-go decodes
them into typed structs where a missing field is its zero value; we read the
dicts the same way, so a missing field gives what Prometheus would give. A field
of the wrong type would fail Go's decoding; here it reads as the zero value and
is noted as a problem, so one bad object never stops discovery and is counted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from sys import intern
from typing import Any

META = "__meta_kubernetes_"
NAMESPACE = META + "namespace"
ADDRESS = "__address__"
PRESENT = "true"

_INVALID = re.compile(r"[^a-zA-Z0-9_]")

Obj = Mapping[str, Any]


@dataclass(slots=True)
class TargetGroup:
    """One object's targets: Prometheus' ``targetgroup.Group``.

    ``labels`` are common to every target; a target's own label wins over a
    group label of the same name, as Prometheus merges them.
    """

    source: str
    labels: dict[str, str] = field(default_factory=dict)
    targets: list[dict[str, str]] = field(default_factory=list)
    # Why the object gave fewer or poorer targets than a well-formed one would.
    problems: list[str] = field(default_factory=list)
    # False when Prometheus would send nothing for this object (a node without
    # an address): the group there was, if any, stays as it was.
    send: bool = True

    def flatten(self) -> list[dict[str, str]]:
        return [{**self.labels, **t} for t in self.targets]


@dataclass(slots=True)
class Lookups:
    """The other objects a builder may consult, keyed as client-go's stores key them.

    ``nodes`` is None unless ``attach_metadata { node = true }``, ``namespaces``
    unless ``attach_metadata { namespace = true }``; pods and services are keyed
    ``namespace/name``, nodes and namespaces by name.
    """

    nodes: Mapping[str, Obj] | None = None
    namespaces: Mapping[str, Obj] | None = None
    pods: Mapping[str, Obj] = field(default_factory=dict)
    services: Mapping[str, Obj] = field(default_factory=dict)


def sanitize(name: str) -> str:
    """Prometheus' ``strutil.SanitizeLabelName``: every character outside [a-zA-Z0-9_] becomes ``_``."""
    return _INVALID.sub("_", name)


def join_host_port(host: str, port: str) -> str:
    """Go's ``net.JoinHostPort``: an IPv6 host is bracketed."""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def go_uint(n: int) -> str:
    """``strconv.FormatUint(uint64(int32))``: how Prometheus prints most ports, negatives wrapping."""
    return str(n & 0xFFFFFFFFFFFFFFFF)


def go_bool(b: bool) -> str:
    return "true" if b else "false"


def namespaced(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


class Reader:
    """Reads fields as Go's zero values where missing; notes fields of the wrong type."""

    __slots__ = ("problems",)

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems

    def _wrong(self, key: str, want: str, got: Any) -> None:
        self.problems.append(f"field {key!r}: expected {want}, got {type(got).__name__}")

    def _get(self, d: Obj, key: str, kind: type | tuple[type, ...], want: str) -> Any:
        """The field if it has the type, else None (noted unless simply absent)."""
        v = d.get(key)
        if v is None or isinstance(v, kind):
            return v
        self._wrong(key, want, v)
        return None

    def _items(self, d: Obj, key: str, kind: type, want: str) -> list[Any]:
        v = self._get(d, key, list, "list")
        out = []
        for item in v or ():
            if isinstance(item, kind):
                out.append(item)
            else:
                self._wrong(key + "[]", want, item)
        return out

    def obj(self, d: Obj, key: str) -> Obj:
        return self._get(d, key, Mapping, "object") or {}

    def opt_obj(self, d: Obj, key: str) -> Obj | None:
        """A pointer to a struct: None when absent."""
        return self._get(d, key, Mapping, "object")

    def objs(self, d: Obj, key: str) -> list[Obj]:
        return self._items(d, key, Mapping, "object")

    def strs(self, d: Obj, key: str) -> list[str]:
        return self._items(d, key, str, "string")

    def str(self, d: Obj, key: str) -> str:
        return self._get(d, key, str, "string") or ""

    def opt_str(self, d: Obj, key: str) -> str | None:
        """A ``*string``: None when absent, so a present empty string still sets a label."""
        return self._get(d, key, str, "string")

    def int(self, d: Obj, key: str) -> int:
        v = self.opt_int(d, key)
        return 0 if v is None else v

    def opt_int(self, d: Obj, key: str) -> int | None:
        v = d.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or not -(2**31) <= v < 2**31:
            self._wrong(key, "int32", v)
            return None
        return v

    def opt_bool(self, d: Obj, key: str) -> bool | None:
        return self._get(d, key, bool, "bool")

    def str_map(self, d: Obj, key: str) -> dict[str, str]:
        out = {}
        for k, val in self.obj(d, key).items():
            if isinstance(val, str):
                out[str(k)] = val
            else:
                self._wrong(f"{key}.{k}", "string", val)
        return out


def add_meta_labels(ls: dict[str, str], r: Reader, meta: Obj, kind: str) -> None:
    """``__meta_kubernetes_<kind>_name`` and every label and annotation, with their ``present`` twins."""
    ls[intern(f"{META}{kind}_name")] = r.str(meta, "name")
    add_labels_and_annotations(ls, r, meta, kind)


def add_labels_and_annotations(ls: dict[str, str], r: Reader, meta: Obj, kind: str) -> None:
    """The object's labels and annotations as ``__meta_kubernetes_<kind>_label_*`` and the rest.

    The names are interned: the same few hundred recur on every object, and
    thousands of targets then share one string each instead of holding copies.
    """
    for k, v in r.str_map(meta, "labels").items():
        ln = sanitize(k)
        ls[intern(f"{META}{kind}_label_{ln}")] = v
        ls[intern(f"{META}{kind}_labelpresent_{ln}")] = PRESENT
    for k, v in r.str_map(meta, "annotations").items():
        ln = sanitize(k)
        ls[intern(f"{META}{kind}_annotation_{ln}")] = v
        ls[intern(f"{META}{kind}_annotationpresent_{ln}")] = PRESENT


def node_meta_labels(lookups: Lookups, r: Reader, node_name: str | None) -> dict[str, str]:
    """attach_metadata node: the node's name, labels and annotations, if the node is known."""
    return _attached(lookups.nodes, node_name, r, "node", with_name=True)


def namespace_meta_labels(lookups: Lookups, r: Reader, namespace: str) -> dict[str, str]:
    """attach_metadata namespace: the namespace's labels and annotations (its name is already
    ``__meta_kubernetes_namespace``), if the namespace is known."""
    return _attached(lookups.namespaces, namespace, r, "namespace", with_name=False)


def _attached(store: Mapping[str, Obj] | None, key: str | None, r: Reader, kind: str,
              with_name: bool) -> dict[str, str]:
    obj = None if store is None or key is None else store.get(key)
    if obj is None:
        return {}
    ls: dict[str, str] = {}
    meta = r.obj(obj, "metadata")
    if with_name:
        add_meta_labels(ls, r, meta, kind)
    else:
        add_labels_and_annotations(ls, r, meta, kind)
    return ls


def source_of(kind: str, obj: Obj) -> str:
    """A group's source, ``<kind>/<namespace>/<name>``; used also for the group that deletes it."""
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return f"{kind}//"
    ns, name = meta.get("namespace"), meta.get("name")
    return f"{kind}/{ns if isinstance(ns, str) else ''}/{name if isinstance(name, str) else ''}"
