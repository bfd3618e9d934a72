"""Kubernetes discovery: shared informers in, Prometheus' target groups out, kept current.

A :class:`Discoverer` takes the informers a role needs from the process'
shared :class:`Informers` (the primary resource, and the pods, services,
nodes and namespaces whose metadata its targets carry), rebuilds a primary object's group
when it or anything its build looked up changes, and hands the whole target
list to a callback, coalescing a burst of changes into one call. Errors of the
informers never empty the targets: the informers keep their last objects, and
so the groups stay as they were.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter

from agent.discovery.informer import Informer, InformerKey, object_key
from agent.discovery.informers import Informers
from agent.discovery.kubeclient import ClientSettings
from agent.discovery.roles import BUILDERS, Lookups, Obj

log = structlog.get_logger("discovery.kubernetes")

ObjKey = tuple[str, str]

# (group, version, plural) of each resource a role reads.
RESOURCES = {
    "node": ("", "v1", "nodes"),
    "pod": ("", "v1", "pods"),
    "service": ("", "v1", "services"),
    "endpoints": ("", "v1", "endpoints"),
    "endpointslice": ("discovery.k8s.io", "v1", "endpointslices"),
    "ingress": ("networking.k8s.io", "v1", "ingresses"),
    "namespace": ("", "v1", "namespaces"),
}
ROLES = ("node", "pod", "service", "endpoints", "endpointslice", "ingress")
# Roles whose targets can carry their node's and their namespace's metadata.
NODE_METADATA = ("pod", "endpoints", "endpointslice")
NAMESPACE_METADATA = ("pod", "service", "endpoints", "endpointslice", "ingress")
CLUSTER_SCOPED = ("node", "namespace")
# The other resources whose objects a role's targets carry metadata of.
SECONDARY = {"endpoints": ("service", "pod"), "endpointslice": ("service", "pod")}
# Which selector roles each role accepts (Prometheus' allowedSelectors).
ALLOWED_SELECTORS = {
    "pod": ("pod", "node"),
    "service": ("service",),
    "endpointslice": ("pod", "service", "endpointslice"),
    "endpoints": ("pod", "service", "endpoints"),
    "node": ("node",),
    "ingress": ("ingress",),
}
# How long a burst of changes is gathered before the targets are handed on.
COALESCE = 0.05


@dataclass(frozen=True)
class Selector:
    label: str = ""
    field: str = ""


@dataclass(frozen=True)
class Config:
    role: str
    namespaces: tuple[str, ...] = ()  # () for all
    selectors: Mapping[str, Selector] = field(default_factory=dict)
    attach_node: bool = False
    attach_namespace: bool = False

    def key(self, resource: str) -> InformerKey:
        group, version, plural = RESOURCES[resource]
        # Namespaces are listed unfiltered, as Prometheus lists them.
        sel = self.selectors.get(resource, Selector()) if resource != "namespace" else Selector()
        namespaces = () if resource in CLUSTER_SCOPED else self.namespaces
        return InformerKey(group, version, plural, namespaces, sel.label, sel.field)


def problem_reason(problem: str) -> str:
    """A problem's kind, for the metric: a builder's message to a short label value."""
    if problem.startswith("field "):
        return "malformed_field"
    return {"node has no address": "node_without_address", "pod has no IP": "pod_without_ip"}.get(
        problem, "other"
    )


class Metrics:
    """Made once per registry: a discoverer rebuilt for new arguments keeps counting in it."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else CollectorRegistry()
        self.events = Counter(
            "prometheus_sd_kubernetes_events", "Kubernetes events handled, by resource and event.",
            ["role", "event"], registry=reg,
        )
        self.problems = Counter(
            "shoal_discovery_kubernetes_object_problems",
            "Objects that gave fewer or poorer targets than a well-formed one would, by reason.",
            ["role", "reason"], registry=reg,
        )


class _View(Mapping[str, Obj]):
    """An informer's objects under client-go's store keys, noting every key a build asks for."""

    def __init__(self, informer: Informer, namespaced: bool) -> None:
        self.informer = informer
        self.namespaced = namespaced
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> Obj:
        self.asked.add(key)
        ns, _, name = key.rpartition("/") if self.namespaced else ("", "", key)
        obj = self.informer.get(ns, name)
        if obj is None:
            raise KeyError(key)
        return obj

    def __iter__(self) -> Iterator[str]:
        for ns, name in list(self.informer.objects):
            yield f"{ns}/{name}" if self.namespaced else name

    def __len__(self) -> int:
        return len(self.informer.objects)


class _Subscriber:
    """Tells the discoverer which objects of one resource changed."""

    def __init__(self, owner: Discoverer, resource: str) -> None:
        self._owner = owner
        self._resource = resource

    def on_add(self, obj: dict[str, Any]) -> None:
        self._owner._changed(self._resource, "add", obj)

    def on_update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self._owner._changed(self._resource, "update", new)

    def on_delete(self, obj: dict[str, Any]) -> None:
        self._owner._changed(self._resource, "delete", obj)


class Discoverer:
    """One discovery.kubernetes: a role's targets from shared informers."""

    def __init__(
        self,
        informers: Informers,
        settings: ClientSettings,
        config: Config,
        on_targets: Callable[[list[dict[str, str]]], None],
        metrics: Metrics | None = None,
    ) -> None:
        self._informers = informers
        self._settings = settings
        self.config = config
        self._on_targets = on_targets
        self._metrics = metrics or Metrics()
        self._build = BUILDERS[config.role]
        self.held: dict[str, Informer] = {}  # resource -> informer
        self._subs: dict[str, _Subscriber] = {}
        self._views: dict[str, _View] = {}
        self._groups: dict[ObjKey, list[dict[str, str]]] = {}
        # What each primary object's last build looked up, and the reverse.
        self._deps: dict[ObjKey, set[tuple[str, str]]] = {}
        self._dependants: dict[tuple[str, str], set[ObjKey]] = collections.defaultdict(set)
        self._dirty: set[ObjKey] = set()
        self._wake = asyncio.Event()
        self._published = False

    def resources(self) -> list[str]:
        out = [self.config.role, *SECONDARY.get(self.config.role, ())]
        if self.config.attach_node and self.config.role in NODE_METADATA:
            out.append("node")
        if self.config.attach_namespace and self.config.role in NAMESPACE_METADATA:
            out.append("namespace")
        return out

    async def start(self) -> None:
        """Acquire the informers (connecting if this is the first user of the settings)."""
        try:
            for resource in self.resources():
                self.held[resource] = await self._informers.acquire(
                    self._settings, self.config.key(resource)
                )
        except BaseException:
            await self.stop()
            raise
        for resource, inf in self.held.items():
            if resource != self.config.role:
                self._views[resource] = _View(inf, namespaced=resource not in CLUSTER_SCOPED)
        # Subscribing replays what each informer already holds as adds.
        for resource, inf in self.held.items():
            self._subs[resource] = sub = _Subscriber(self, resource)
            inf.subscribe(sub)

    async def stop(self) -> None:
        held, self.held = self.held, {}
        for resource, inf in held.items():
            sub = self._subs.pop(resource, None)
            if sub is not None:
                inf.unsubscribe(sub)
            await self._informers.release(self._settings, inf)

    async def run(self) -> None:
        """Hand on the targets once every informer has listed, then whenever they change,
        a burst of changes at a time (Prometheus also waits for its caches to sync)."""
        for inf in list(self.held.values()):
            await inf.synced.wait()
        self.flush()
        while True:
            await self._wake.wait()
            await asyncio.sleep(COALESCE)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Rebuild the groups of changed objects; hand on the targets if any group changed."""
        dirty, self._dirty = self._dirty, set()
        changed = False
        primary = self.held[self.config.role]
        for key in dirty:
            obj = primary.get(*key)
            if obj is None:
                changed |= self._groups.pop(key, None) is not None
                self._set_deps(key, set())
                continue
            targets = self._rebuild(key, obj)
            if targets is not None and self._groups.get(key) != targets:
                self._groups[key] = targets
                changed = True
        if changed or not self._published:
            self._published = True
            self._on_targets(self.targets())

    def targets(self) -> list[dict[str, str]]:
        return [t for group in self._groups.values() for t in group]

    def _rebuild(self, key: ObjKey, obj: Obj) -> list[dict[str, str]] | None:
        for view in self._views.values():
            view.asked = set()
        lookups = Lookups(
            nodes=self._views.get("node"),
            namespaces=self._views.get("namespace"),
            pods=self._views.get("pod", {}),
            services=self._views.get("service", {}),
        )
        tg = self._build(obj, lookups)
        self._set_deps(key, {(res, k) for res, view in self._views.items() for k in view.asked})
        for reason in {problem_reason(p) for p in tg.problems}:
            self._metrics.problems.labels(self.config.role, reason).inc()
        if tg.problems:
            log.debug("object problems", source=tg.source, problems=tg.problems)
        # A node without an address keeps the group it had, as in Prometheus.
        return tg.flatten() if tg.send else None

    def _set_deps(self, key: ObjKey, deps: set[tuple[str, str]]) -> None:
        for dep in self._deps.pop(key, set()) - deps:
            users = self._dependants.get(dep)
            if users is not None:
                users.discard(key)
                if not users:
                    del self._dependants[dep]
        if deps:
            self._deps[key] = deps
            for dep in deps:
                self._dependants[dep].add(key)

    def _changed(self, resource: str, event: str, obj: dict[str, Any]) -> None:
        self._metrics.events.labels(resource, event).inc()
        key = object_key(obj)
        if key is None:
            return
        if resource == self.config.role:
            self._dirty.add(key)
        else:
            store_key = key[1] if resource in CLUSTER_SCOPED else f"{key[0]}/{key[1]}"
            self._dirty |= self._dependants.get((resource, store_key), set())
        self._wake.set()

    def health(self) -> list[tuple[InformerKey, Any]]:
        return [(inf.key, inf.health) for inf in self.held.values()]
