"""Bearer-token authentication and RBAC authorization as the real API server does them, so a
test proves that the ClusterRole in manifests/ grants what the agent asks for, and reports
the grants nothing used."""

from __future__ import annotations

import csv
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import yaml

RBAC_KINDS = {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}

# What every cluster's bootstrap roles system:discovery and system:public-info-viewer give
# any authenticated user; not part of the manifests under test, so never reported unused.
_DISCOVERY_URLS = ("/api", "/api/*", "/apis", "/apis/*", "/version", "/version/",
                   "/healthz", "/livez", "/readyz", "/openapi/*")


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...]

    @classmethod
    def service_account(cls, namespace: str, name: str) -> User:
        return cls(f"system:serviceaccount:{namespace}:{name}",
                   ("system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                    "system:authenticated"))


class Request(NamedTuple):
    """The attributes an authorizer decides on."""

    verb: str
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""  # set for non-resource requests only

    @property
    def is_resource(self) -> bool:
        return not self.path

    def describe(self, user: User) -> str:
        if not self.is_resource:
            return f'forbidden: User "{user.name}" cannot {self.verb} path "{self.path}"'
        res = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        where = (f'in the namespace "{self.namespace}"' if self.namespace
                 else "at the cluster scope")
        return (f'{res} is forbidden: User "{user.name}" cannot {self.verb} resource "{res}" '
                f'in API group "{self.api_group}" {where}')


class Grant(NamedTuple):
    """One concrete permission a rule spells out, for the unused-grant report."""

    role: str
    verb: str
    api_group: str
    resource: str  # or a non-resource URL


class _Rule(NamedTuple):
    role: str
    index: int
    rule: dict[str, Any]
    namespace: str  # "" for cluster-wide


def _matches(values: Iterable[str], want: str) -> bool:
    return any(v == "*" or v == want for v in values)


def _rule_allows(rule: dict[str, Any], req: Request) -> bool:
    if not _matches(rule.get("verbs", ()), req.verb):
        return False
    if not req.is_resource:
        for url in rule.get("nonResourceURLs", ()):
            if url == req.path or (url.endswith("*") and req.path.startswith(url[:-1])):
                return True
        return False
    if not _matches(rule.get("apiGroups", ()), req.api_group):
        return False
    full = f"{req.resource}/{req.subresource}" if req.subresource else req.resource
    ok = False
    for r in rule.get("resources", ()):
        if r in ("*", full) or (req.subresource and r == f"*/{req.subresource}"):
            ok = True
            break
    if not ok:
        return False
    names = rule.get("resourceNames") or ()
    return not names or req.name in names


class Auth:
    """Tokens to users, and RBAC objects to decisions; records which rules were used."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.tokens: dict[str, User] = {}
        self.roles: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (namespace, name)
        self.bindings: list[dict[str, Any]] = []
        self.rbac_enabled = False
        self.used: set[tuple[str, int, Grant]] = set()

    # -- configuration ----------------------------------------------------------
    def add_token(self, token: str, user: User) -> None:
        with self._lock:
            self.tokens[token] = user

    def add_service_account_token(self, token: str, namespace: str, name: str) -> User:
        user = User.service_account(namespace, name)
        self.add_token(token, user)
        return user

    def remove_token(self, token: str) -> None:
        with self._lock:
            self.tokens.pop(token, None)

    def load_token_file(self, path: Path) -> None:
        """kube-apiserver's --token-auth-file: token,user,uid[,"group1,group2"]."""
        for row in csv.reader(path.read_text().splitlines()):
            if not row or row[0].startswith("#"):
                continue
            groups = tuple(g for g in (row[3].split(",") if len(row) > 3 else ()) if g)
            name = row[1]
            if name.startswith("system:serviceaccount:"):
                ns, sa = name.split(":")[2:4]
                user = User.service_account(ns, sa)
                user = User(user.name, user.groups + groups)
            else:
                user = User(name, groups + ("system:authenticated",))
            self.add_token(row[0], user)

    def add_object(self, obj: dict[str, Any]) -> None:
        kind = obj.get("kind")
        meta = obj.get("metadata", {})
        with self._lock:
            self.rbac_enabled = True
            if kind in ("ClusterRole", "Role"):
                ns = meta.get("namespace", "") if kind == "Role" else ""
                self.roles[(ns, meta["name"])] = list(obj.get("rules") or [])
            elif kind in ("ClusterRoleBinding", "RoleBinding"):
                self.bindings.append(obj)

    def load_rbac_file(self, path: Path) -> None:
        """Every RBAC object of a multi-document YAML file; other kinds are ignored."""
        for doc in yaml.safe_load_all(Path(path).read_text()):
            if doc and doc.get("kind") in RBAC_KINDS:
                self.add_object(doc)

    # -- decisions --------------------------------------------------------------
    def authenticate(self, header: str | None) -> User | None:
        if not header or not header.startswith("Bearer "):
            return None
        with self._lock:
            return self.tokens.get(header[len("Bearer "):].strip())

    def _subject_matches(self, subject: dict[str, Any], user: User,
                         binding_ns: str) -> bool:
        kind = subject.get("kind")
        if kind == "ServiceAccount":
            ns = subject.get("namespace") or binding_ns
            return user.name == f"system:serviceaccount:{ns}:{subject.get('name')}"
        if kind == "User":
            return user.name == subject.get("name")
        if kind == "Group":
            return subject.get("name") in user.groups
        return False

    def _rules_for(self, user: User) -> Iterator[_Rule]:
        for b in self.bindings:
            ns = b.get("metadata", {}).get("namespace", "") if b["kind"] == "RoleBinding" else ""
            if not any(self._subject_matches(s, user, ns) for s in b.get("subjects") or ()):
                continue
            ref = b.get("roleRef", {})
            role_ns = ns if ref.get("kind") == "Role" else ""
            for i, rule in enumerate(self.roles.get((role_ns, ref.get("name", "")), ())):
                yield _Rule(ref.get("name", ""), i, rule, ns)

    def authorize(self, user: User, req: Request) -> bool:
        if not req.is_resource and req.verb == "get" and any(
                _rule_allows({"verbs": ["get"], "nonResourceURLs": [u]}, req)
                for u in _DISCOVERY_URLS):
            return True
        with self._lock:
            if not self.rbac_enabled or "system:masters" in user.groups:
                return True  # as the real server's superuser group, never through RBAC
            for r in self._rules_for(user):
                if r.namespace and (not req.is_resource or r.namespace != req.namespace):
                    continue
                if _rule_allows(r.rule, req):
                    what = (req.path if not req.is_resource else
                            f"{req.resource}/{req.subresource}" if req.subresource
                            else req.resource)
                    self.used.add((r.role, r.index,
                                   Grant(r.role, req.verb, req.api_group, what)))
                    return True
            return False

    def unused_grants(self, role: str | None = None) -> list[Grant]:
        """Every (verb, group, resource) a role's rules spell out that no request used."""
        with self._lock:
            used = {g for _, _, g in self.used}
            out = []
            for (_, name), rules in self.roles.items():
                if role is not None and name != role:
                    continue
                for rule in rules:
                    for verb in rule.get("verbs", ()):
                        for url in rule.get("nonResourceURLs", ()):
                            g = Grant(name, verb, "", url)
                            if g not in used and not any(
                                    u.role == name and u.verb == verb and not u.api_group
                                    and _rule_allows(rule, Request(verb, path=u.resource))
                                    for u in used if u.resource.startswith("/")):
                                out.append(g)
                        for group in rule.get("apiGroups", ()):
                            for res in rule.get("resources", ()):
                                g = Grant(name, verb, group, res)
                                if g not in used:
                                    out.append(g)
            return out
