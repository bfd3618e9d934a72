"""Role ``pod``: one target per container port, and one per container without ports.

``pod_labels`` and ``containers`` are shared with the endpoints and
endpointslice roles, which attach the same pod metadata to their targets.
"""

from __future__ import annotations

from agent.discovery.roles._meta import (
    ADDRESS,
    META,
    NAMESPACE,
    Lookups,
    Obj,
    Reader,
    TargetGroup,
    add_meta_labels,
    go_bool,
    go_uint,
    join_host_port,
    namespace_meta_labels,
    node_meta_labels,
    source_of,
)

CONTAINER_NAME = META + "pod_container_name"
CONTAINER_ID = META + "pod_container_id"
CONTAINER_IMAGE = META + "pod_container_image"
PORT_NAME = META + "pod_container_port_name"
PORT_NUMBER = META + "pod_container_port_number"
PORT_PROTOCOL = META + "pod_container_port_protocol"
CONTAINER_INIT = META + "pod_container_init"


def source(obj: Obj) -> str:
    return source_of("pod", obj)


def pod_labels(pod: Obj, r: Reader) -> dict[str, str]:
    """The pod's own meta labels (Prometheus' ``podLabels``), without its namespace."""
    meta = r.obj(pod, "metadata")
    spec = r.obj(pod, "spec")
    status = r.obj(pod, "status")
    ls = {
        META + "pod_ip": r.str(status, "podIP"),
        META + "pod_ready": _ready(status, r),
        META + "pod_phase": r.str(status, "phase"),
        META + "pod_node_name": r.str(spec, "nodeName"),
        META + "pod_host_ip": r.str(status, "hostIP"),
        META + "pod_uid": r.str(meta, "uid"),
    }
    add_meta_labels(ls, r, meta, "pod")
    for ref in r.objs(meta, "ownerReferences"):
        if r.opt_bool(ref, "controller"):
            kind, name = r.str(ref, "kind"), r.str(ref, "name")
            if kind:
                ls[META + "pod_controller_kind"] = kind
            if name:
                ls[META + "pod_controller_name"] = name
            break
    return ls


def _ready(status: Obj, r: Reader) -> str:
    for cond in r.objs(status, "conditions"):
        if r.str(cond, "type") == "Ready":
            return r.str(cond, "status").lower()
    return "unknown"


def containers(pod: Obj, r: Reader) -> list[tuple[Obj, bool]]:
    """Containers then init containers, each with whether it is an init container."""
    spec = r.obj(pod, "spec")
    return [(c, False) for c in r.objs(spec, "containers")] + [
        (c, True) for c in r.objs(spec, "initContainers")
    ]


def _container_id(statuses: list[Obj], name: str, r: Reader) -> str:
    for s in statuses:
        if r.str(s, "name") == name:
            return r.str(s, "containerID")
    return ""


def build(pod: Obj, lookups: Lookups) -> TargetGroup:
    tg = TargetGroup(source(pod))
    r = Reader(tg.problems)
    status = r.obj(pod, "status")
    ip = r.str(status, "podIP")
    if not ip:
        # Pending or evicted: an empty group, which removes any earlier targets.
        tg.problems.append("pod has no IP")
        return tg
    node_name = r.str(r.obj(pod, "spec"), "nodeName")
    # With node metadata, a pod on a node the node selectors filtered out is dropped.
    if lookups.nodes is not None and node_name not in lookups.nodes:
        return tg

    ls = tg.labels
    ls.update(pod_labels(pod, r))
    ls[NAMESPACE] = r.str(r.obj(pod, "metadata"), "namespace")
    ls.update(node_meta_labels(lookups, r, node_name))
    ls.update(namespace_meta_labels(lookups, r, ls[NAMESPACE]))

    statuses = r.objs(status, "containerStatuses")
    init_statuses = r.objs(status, "initContainerStatuses")
    for c, is_init in containers(pod, r):
        name = r.str(c, "name")
        common = {
            CONTAINER_NAME: name,
            CONTAINER_ID: _container_id(init_statuses if is_init else statuses, name, r),
            CONTAINER_IMAGE: r.str(c, "image"),
            CONTAINER_INIT: go_bool(is_init),
        }
        ports = r.objs(c, "ports")
        if not ports:
            # No port: the pod IP alone; the user adds a port by relabelling.
            tg.targets.append({ADDRESS: ip, **common})
            continue
        for p in ports:
            number = go_uint(r.int(p, "containerPort"))
            tg.targets.append({
                ADDRESS: join_host_port(ip, number),
                **common,
                PORT_NUMBER: number,
                PORT_NAME: r.str(p, "name"),
                PORT_PROTOCOL: r.str(p, "protocol"),
            })
    return tg
