"""Role ``endpoints``: a target per address and port of an Endpoints object, ready or not.

Targets carry the service's labels (on the group) and, for addresses backed
by a pod, the pod's metadata and its matching container port; a pod's other
container ports get targets of their own.
"""

from __future__ import annotations

from agent.discovery.roles import service as svcrole
from agent.discovery.roles._meta import (
    ADDRESS,
    META,
    NAMESPACE,
    Lookups,
    Obj,
    Reader,
    TargetGroup,
    add_meta_labels,
    go_uint,
    join_host_port,
    namespace_meta_labels,
    namespaced,
    node_meta_labels,
    source_of,
)
from agent.discovery.roles._podref import SeenPods


def source(obj: Obj) -> str:
    return source_of("endpoints", obj)


def build(eps: Obj, lookups: Lookups) -> TargetGroup:
    tg = TargetGroup(source(eps))
    r = Reader(tg.problems)
    meta = r.obj(eps, "metadata")
    ns = r.str(meta, "namespace")
    tg.labels[NAMESPACE] = ns
    svc = lookups.services.get(namespaced(ns, r.str(meta, "name")))
    if svc is not None:
        tg.labels.update(svcrole.service_labels(svc, r))
    add_meta_labels(tg.labels, r, meta, "endpoints")
    tg.labels.update(namespace_meta_labels(lookups, r, ns))
    seen = SeenPods(lookups, r)

    def add(addr: Obj, port: Obj, ready: str) -> None:
        number = r.int(port, "port")
        target = {
            ADDRESS: join_host_port(r.str(addr, "ip"), go_uint(number)),
            META + "endpoint_port_name": r.str(port, "name"),
            META + "endpoint_port_protocol": r.str(port, "protocol"),
            META + "endpoint_ready": ready,
        }
        ref = r.opt_obj(addr, "targetRef")
        if ref is not None:
            target[META + "endpoint_address_target_kind"] = r.str(ref, "kind")
            target[META + "endpoint_address_target_name"] = r.str(ref, "name")
        node_name = r.opt_str(addr, "nodeName")
        if node_name is not None:
            target[META + "endpoint_node_name"] = node_name
        hostname = r.str(addr, "hostname")
        if hostname:
            target[META + "endpoint_hostname"] = hostname
        if node_name is not None:
            target.update(node_meta_labels(lookups, r, node_name))
        elif ref is not None and r.str(ref, "kind") == "Node":
            target.update(node_meta_labels(lookups, r, r.str(ref, "name")))
        pod = seen.resolve(ref)
        if pod is not None:
            # The endpoint port's protocol, as Prometheus; vmagent 1.79 takes the container's.
            seen.attach(target, pod, number, lambda _cport: r.str(port, "protocol"))
        tg.targets.append(target)

    for subset in r.objs(eps, "subsets"):
        addresses = r.objs(subset, "addresses")
        not_ready = r.objs(subset, "notReadyAddresses")
        for port in r.objs(subset, "ports"):
            for addr in addresses:
                add(addr, port, "true")
            for addr in not_ready:
                add(addr, port, "false")
    tg.targets.extend(seen.uncovered())
    return tg
