"""Role ``service``: one target per service port, at the service's cluster DNS name."""

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
    join_host_port,
    namespace_meta_labels,
    source_of,
)


def source(obj: Obj) -> str:
    return source_of("svc", obj)


def service_labels(svc: Obj, r: Reader) -> dict[str, str]:
    """The namespace and the service's meta labels; the endpoints roles attach them too
    (not the cluster IP and type, which vmagent 1.79 adds there and Prometheus does not)."""
    meta = r.obj(svc, "metadata")
    ls = {NAMESPACE: r.str(meta, "namespace")}
    add_meta_labels(ls, r, meta, "service")
    return ls


def build(svc: Obj, lookups: Lookups) -> TargetGroup:
    tg = TargetGroup(source(svc))
    r = Reader(tg.problems)
    tg.labels = service_labels(svc, r)
    tg.labels.update(namespace_meta_labels(lookups, r, tg.labels[NAMESPACE]))
    meta = r.obj(svc, "metadata")
    spec = r.obj(svc, "spec")
    host = f"{r.str(meta, 'name')}.{r.str(meta, 'namespace')}.svc"
    kind = r.str(spec, "type")
    for p in r.objs(spec, "ports"):
        number = str(r.int(p, "port"))
        t = {
            ADDRESS: join_host_port(host, number),
            META + "service_port_name": r.str(p, "name"),
            META + "service_port_number": number,
            META + "service_port_protocol": r.str(p, "protocol"),
            META + "service_type": kind,
        }
        if kind == "ExternalName":
            t[META + "service_external_name"] = r.str(spec, "externalName")
        else:
            t[META + "service_cluster_ip"] = r.str(spec, "clusterIP")
        if kind == "LoadBalancer":
            t[META + "service_loadbalancer_ip"] = _load_balancer_ips(svc, spec, r)
        tg.targets.append(t)
    return tg


def _load_balancer_ips(svc: Obj, spec: Obj, r: Reader) -> str:
    lb = r.obj(r.obj(svc, "status"), "loadBalancer")
    ips = [ip for ing in r.objs(lb, "ingress") if (ip := r.str(ing, "ip"))]
    return ",".join(ips) if ips else r.str(spec, "loadBalancerIP")
