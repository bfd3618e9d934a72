"""Role ``ingress``: one target per rule and path, https where a TLS host matches the rule's host."""

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
    namespace_meta_labels,
    source_of,
)


def source(obj: Obj) -> str:
    return source_of("ingress", obj)


def matches_host(pattern: str, host: str) -> bool:
    """A TLS host covers a rule's host exactly, or as ``*.rest`` with as many parts."""
    if pattern == host:
        return True
    pp, hp = pattern.split("."), host.split(".")
    return pp[0] == "*" and len(pp) == len(hp) and pp[1:] == hp[1:]


def build(ing: Obj, lookups: Lookups) -> TargetGroup:
    tg = TargetGroup(source(ing))
    r = Reader(tg.problems)
    meta = r.obj(ing, "metadata")
    spec = r.obj(ing, "spec")
    ls = tg.labels
    ls[NAMESPACE] = r.str(meta, "namespace")
    cls = r.opt_str(spec, "ingressClassName")
    if cls is not None:  # only when set, as Prometheus; vmagent 1.79 sets it empty
        ls[META + "ingress_class_name"] = cls
    add_meta_labels(ls, r, meta, "ingress")
    ls.update(namespace_meta_labels(lookups, r, ls[NAMESPACE]))

    tls_hosts = [h for t in r.objs(spec, "tls") for h in r.strs(t, "hosts")]
    for rule in r.objs(spec, "rules"):
        host = r.str(rule, "host")
        scheme = "https" if any(matches_host(p, host) for p in tls_hosts) else "http"
        http = r.opt_obj(rule, "http")
        # A rule without http stands for "/"; an empty path too.
        paths = ["/"] if http is None else [r.str(p, "path") or "/" for p in r.objs(http, "paths")]
        for path in paths:
            tg.targets.append({
                ADDRESS: host,
                META + "ingress_scheme": scheme,
                META + "ingress_host": host,
                META + "ingress_path": path,
            })
    return tg
