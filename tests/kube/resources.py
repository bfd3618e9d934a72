"""The kinds of object the stand-in serves and the discovery documents that describe them,
so that kubernetes-asyncio and vmagent find every resource where a real cluster puts it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

READ_VERBS = ["get", "list", "watch"]
ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class Resource:
    group: str  # "" for core
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    builtin: bool = True  # built-in lists omit kind/apiVersion on items; CRD lists keep them
    subresources: tuple[str, ...] = field(default=())

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version


BUILTIN = [
    Resource("", "v1", "nodes", "Node", False, "node", ("no",), subresources=("metrics", "proxy", "status")),
    Resource("", "v1", "pods", "Pod", True, "pod", ("po",), subresources=("log", "status")),
    Resource("", "v1", "services", "Service", True, "service", ("svc",), subresources=("status",)),
    Resource("", "v1", "endpoints", "Endpoints", True, "endpoints", ("ep",)),
    Resource("", "v1", "namespaces", "Namespace", False, "namespace", ("ns",), subresources=("status",)),
    Resource("", "v1", "secrets", "Secret", True, "secret"),
    Resource("", "v1", "configmaps", "ConfigMap", True, "configmap", ("cm",)),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True, "serviceaccount", ("sa",)),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True, "endpointslice"),
    Resource("networking.k8s.io", "v1", "ingresses", "Ingress", True, "ingress", ("ing",),
             subresources=("status",)),
]


def shared_dir() -> Path:
    """The shared folder beside the worktrees (…/shared), wherever this checkout lives."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent / "shared" / "conformance" / "operator-crds"
        if cand.is_dir():
            return parent / "shared"
    raise FileNotFoundError("no shared/conformance/operator-crds above " + str(here))


def load_crds(folder: Path | None = None) -> list[Resource]:
    """The served versions of every CustomResourceDefinition in the folder."""
    folder = folder or shared_dir() / "conformance" / "operator-crds"
    out = []
    for path in sorted(folder.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            names = spec["names"]
            for ver in spec["versions"]:
                if not ver.get("served", True):
                    continue
                out.append(Resource(
                    spec["group"], ver["name"], names["plural"], names["kind"],
                    spec["scope"] == "Namespaced", names.get("singular", ""),
                    tuple(names.get("shortNames", ())), builtin=False,
                    subresources=tuple(ver.get("subresources", {}) or ()),
                ))
    return out


class Catalog:
    """Resources by group/version/plural and by apiVersion/kind, and discovery bodies."""

    def __init__(self, resources: list[Resource]) -> None:
        self.resources = resources
        self.by_path = {(r.group, r.version, r.plural): r for r in resources}
        self.by_kind = {(r.api_version, r.kind): r for r in resources}
        self.by_plural = {}
        for r in resources:
            self.by_plural.setdefault(r.plural, r)

    def find(self, group: str, version: str, plural: str) -> Resource | None:
        return self.by_path.get((group, version, plural))

    def for_object(self, obj: dict[str, Any]) -> Resource | None:
        return self.by_kind.get((obj.get("apiVersion", ""), obj.get("kind", "")))

    def groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for r in self.resources:
            if r.group and r.version not in out.setdefault(r.group, []):
                out[r.group].append(r.version)
        return out

    def api_versions(self, server_address: str) -> dict[str, Any]:
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}

    def _group(self, name: str, versions: list[str]) -> dict[str, Any]:
        vs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        return {"name": name, "versions": vs, "preferredVersion": vs[0]}

    def group_list(self) -> dict[str, Any]:
        return {"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [self._group(g, vs) for g, vs in self.groups().items()]}

    def group(self, name: str) -> dict[str, Any] | None:
        versions = self.groups().get(name)
        if not versions:
            return None
        return {"kind": "APIGroup", "apiVersion": "v1", **self._group(name, versions)}

    def resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        found = [r for r in self.resources if r.group == group and r.version == version]
        if not found:
            return None
        items: list[dict[str, Any]] = []
        for r in found:
            item: dict[str, Any] = {
                "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                "kind": r.kind, "verbs": ALL_VERBS,
            }
            if r.short_names:
                item["shortNames"] = list(r.short_names)
            items.append(item)
            for sub in r.subresources:
                items.append({"name": f"{r.plural}/{sub}", "singularName": "",
                              "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get"]})
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version, "resources": items}


def default_catalog() -> Catalog:
    return Catalog(BUILTIN + load_crds())
