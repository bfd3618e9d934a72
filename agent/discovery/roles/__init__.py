"""Kubernetes objects to targets, exactly as Prometheus' Kubernetes discovery builds them.

One pure function per role, from the JSON object the API server returns (and
the other objects it may consult, in :class:`Lookups`) to a
:class:`TargetGroup`. The builders know nothing of informers or the runtime;
``agent/components/discovery_kubernetes.py`` feeds them.
"""

from __future__ import annotations

from collections.abc import Callable

from agent.discovery.roles import endpoints, endpointslice, ingress, node, pod, service
from agent.discovery.roles._meta import Lookups, Obj, TargetGroup, sanitize

__all__ = ["BUILDERS", "SOURCES", "Lookups", "Obj", "TargetGroup", "build", "sanitize"]

Builder = Callable[[Obj, Lookups], TargetGroup]

BUILDERS: dict[str, Builder] = {
    "node": node.build,
    "pod": pod.build,
    "service": service.build,
    "endpoints": endpoints.build,
    "endpointslice": endpointslice.build,
    "ingress": ingress.build,
}

# A group's source from its object, also for an object that was deleted.
SOURCES: dict[str, Callable[[Obj], str]] = {
    "node": node.source,
    "pod": pod.source,
    "service": service.source,
    "endpoints": endpoints.source,
    "endpointslice": endpointslice.source,
    "ingress": ingress.source,
}


def build(role: str, obj: Obj, lookups: Lookups | None = None) -> TargetGroup:
    return BUILDERS[role](obj, lookups or Lookups())
