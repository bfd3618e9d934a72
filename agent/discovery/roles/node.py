"""Role ``node``: one target per node, at its kubelet, as Prometheus' node discovery builds it."""

from __future__ import annotations

from collections.abc import Mapping
from sys import intern

from agent.discovery.roles._meta import (
    ADDRESS,
    META,
    Lookups,
    Obj,
    Reader,
    TargetGroup,
    add_meta_labels,
    join_host_port,
    sanitize,
)

# Prometheus' preference among a node's addresses (nodeAddress in node.go).
ADDRESS_ORDER = ("InternalIP", "InternalDNS", "ExternalIP", "ExternalDNS", "LegacyHostIP", "Hostname")


def source(obj: Obj) -> str:
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return "node/" + (name if isinstance(name, str) else "")


def build(node: Obj, lookups: Lookups) -> TargetGroup:
    """The node's group; not to be sent when the node has no address.

    Prometheus sends nothing then, so a node that loses its addresses keeps
    the target it had, and a new one has none.
    """
    tg = TargetGroup(source(node))
    r = Reader(tg.problems)
    meta = r.obj(node, "metadata")
    spec = r.obj(node, "spec")
    status = r.obj(node, "status")

    ls = tg.labels
    ls[META + "node_provider_id"] = r.str(spec, "providerID")
    for cond in r.objs(status, "conditions"):
        ln = intern(META + "node_condition_" + sanitize(r.str(cond, "type").lower()))
        ls[ln] = r.str(cond, "status").lower()
    add_meta_labels(ls, r, meta, "node")

    by_type: dict[str, list[str]] = {}
    for a in r.objs(status, "addresses"):
        by_type.setdefault(r.str(a, "type"), []).append(r.str(a, "address"))
    address = next((by_type[t][0] for t in ADDRESS_ORDER if t in by_type), None)
    if address is None:
        tg.problems.append("node has no address")
        tg.send = False
        return tg

    port = r.int(r.obj(r.obj(status, "daemonEndpoints"), "kubeletEndpoint"), "Port")
    target = {ADDRESS: join_host_port(address, str(port)), "instance": r.str(meta, "name")}
    for ty, addrs in by_type.items():
        target[intern(sanitize(META + "node_address_" + ty))] = addrs[0]
    tg.targets.append(target)
    return tg
