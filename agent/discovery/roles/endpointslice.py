"""Role ``endpointslice``: a target per endpoint address and port of an EndpointSlice (discovery.k8s.io/v1).

Like the endpoints role it attaches the service's labels, the pod's metadata
and matching container port, and targets for a pod's uncovered ports; it adds
the slice's own labels, conditions, zone and topology.
"""

from __future__ import annotations

from sys import intern

from agent.discovery.roles import service as svcrole
from agent.discovery.roles._meta import (
    ADDRESS,
    META,
    NAMESPACE,
    PRESENT,
    Lookups,
    Obj,
    Reader,
    TargetGroup,
    add_meta_labels,
    go_bool,
    go_uint,
    join_host_port,
    namespace_meta_labels,
    namespaced,
    node_meta_labels,
    sanitize,
    source_of,
)
from agent.discovery.roles._podref import SeenPods

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
_P = META + "endpointslice_"


def source(obj: Obj) -> str:
    return source_of("endpointslice", obj)


def build(eps: Obj, lookups: Lookups) -> TargetGroup:
    tg = TargetGroup(source(eps))
    r = Reader(tg.problems)
    meta = r.obj(eps, "metadata")
    ns = r.str(meta, "namespace")
    address_type = r.str(eps, "addressType")
    tg.labels[NAMESPACE] = ns
    tg.labels[_P + "address_type"] = address_type
    add_meta_labels(tg.labels, r, meta, "endpointslice")
    labels = r.str_map(meta, "labels")
    svc = None
    if SERVICE_NAME_LABEL in labels:
        svc = lookups.services.get(namespaced(ns, labels[SERVICE_NAME_LABEL]))
        if svc is not None:
            tg.labels.update(svcrole.service_labels(svc, r))
    tg.labels.update(namespace_meta_labels(lookups, r, ns))
    if svc is not None and _non_primary_family(svc, address_type, r):
        # A dual-stack service's slice of its second family would repeat every target.
        return tg
    seen = SeenPods(lookups, r)

    def add(addr: str, ep: Obj, port: Obj) -> None:
        number = r.opt_int(port, "port")
        target = {ADDRESS: addr if number is None else join_host_port(addr, go_uint(number))}
        for key, label in (("name", "port_name"), ("protocol", "port_protocol")):
            v = r.opt_str(port, key)
            if v is not None:
                target[_P + label] = v
        if number is not None:
            target[_P + "port"] = go_uint(number)
        app = r.opt_str(port, "appProtocol")
        if app is not None:
            target[_P + "port_app_protocol"] = app
        cond = r.obj(ep, "conditions")
        for key in ("ready", "serving", "terminating"):
            b = r.opt_bool(cond, key)
            if b is not None:
                target[_P + "endpoint_conditions_" + key] = go_bool(b)
        hostname = r.opt_str(ep, "hostname")
        if hostname is not None:
            target[_P + "endpoint_hostname"] = hostname
        ref = r.opt_obj(ep, "targetRef")
        if ref is not None:
            target[_P + "address_target_kind"] = r.str(ref, "kind")
            target[_P + "address_target_name"] = r.str(ref, "name")
        node_name = r.opt_str(ep, "nodeName")
        if node_name is not None:
            target[_P + "endpoint_node_name"] = node_name
        zone = r.opt_str(ep, "zone")
        if zone is not None:
            target[_P + "endpoint_zone"] = zone
        for k, v in r.str_map(ep, "deprecatedTopology").items():
            ln = sanitize(k)
            target[intern(_P + "endpoint_topology_" + ln)] = v
            target[intern(_P + "endpoint_topology_present_" + ln)] = PRESENT
        if ref is not None and r.str(ref, "kind") == "Node":
            target.update(node_meta_labels(lookups, r, r.str(ref, "name")))
        else:
            target.update(node_meta_labels(lookups, r, node_name))
        pod = seen.resolve(ref)
        if pod is not None:
            seen.attach(target, pod, number, lambda cport: r.str(cport, "protocol"))
        tg.targets.append(target)

    ports = r.objs(eps, "ports")
    for ep in r.objs(eps, "endpoints"):
        addresses = r.strs(ep, "addresses")
        for port in ports:
            for addr in addresses:
                add(addr, ep, port)
    tg.targets.extend(seen.uncovered())
    return tg


def _non_primary_family(svc: Obj, address_type: str, r: Reader) -> bool:
    spec = r.obj(svc, "spec")
    policy = r.opt_str(spec, "ipFamilyPolicy")
    if policy not in ("PreferDualStack", "RequireDualStack"):
        return False
    families = r.strs(spec, "ipFamilies")
    return bool(families) and address_type != families[0]
