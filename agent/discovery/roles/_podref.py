"""What the endpoints and endpointslice roles share: a pod behind an address, and its uncovered ports.

Both roles attach the pod's metadata to a target whose address is a pod's,
and then add a target for every container port of those pods that no
endpoint port covered, as Prometheus does.
"""

from __future__ import annotations

from collections.abc import Callable

from agent.discovery.roles import pod as podrole
from agent.discovery.roles._meta import (
    ADDRESS,
    Lookups,
    Obj,
    Reader,
    go_bool,
    go_uint,
    join_host_port,
    namespaced,
)


class SeenPods:
    """Pods met behind addresses, in order, with the endpoint ports seen for each."""

    def __init__(self, lookups: Lookups, r: Reader) -> None:
        self._lookups = lookups
        self._r = r
        self._pods: dict[str, tuple[Obj, list[int | None]]] = {}

    def resolve(self, ref: Obj | None) -> Obj | None:
        """The pod a target reference names, if it is a pod we know."""
        r = self._r
        if ref is None or r.str(ref, "kind") != "Pod":
            return None
        return self._lookups.pods.get(namespaced(r.str(ref, "namespace"), r.str(ref, "name")))

    def attach(
        self, target: dict[str, str], pod: Obj, port: int | None, protocol: Callable[[Obj], str]
    ) -> None:
        """Pod labels, and the labels of a container port equal to the endpoint port.

        ``protocol`` says whose protocol the label takes: endpoints use the
        endpoint port's, endpointslices the container port's.
        """
        r = self._r
        meta = r.obj(pod, "metadata")
        key = namespaced(r.str(meta, "namespace"), r.str(meta, "name"))
        self._pods.setdefault(key, (pod, []))[1].append(port)
        target.update(podrole.pod_labels(pod, r))
        if port is None:
            return
        for c, is_init in podrole.containers(pod, r):
            for cport in r.objs(c, "ports"):
                if r.int(cport, "containerPort") != port:
                    continue
                target[podrole.CONTAINER_NAME] = r.str(c, "name")
                target[podrole.CONTAINER_IMAGE] = r.str(c, "image")
                target[podrole.PORT_NAME] = r.str(cport, "name")
                target[podrole.PORT_NUMBER] = go_uint(port)
                target[podrole.PORT_PROTOCOL] = protocol(cport)
                target[podrole.CONTAINER_INIT] = go_bool(is_init)
                # Only this container's ports stop here: a later container
                # with the same port overwrites, as in Prometheus.
                break

    def uncovered(self) -> list[dict[str, str]]:
        """A target per container port of a seen pod that no endpoint port covered.

        As Prometheus: init containers included, no node metadata, and the
        group's labels (the Endpoints or EndpointSlice object's) apply; vmagent
        1.79 differs on all three (tests/discovery/vmagent.py).
        """
        r = self._r
        out = []
        for pod, seen in self._pods.values():
            ip = r.str(r.obj(pod, "status"), "podIP")
            if not ip:
                continue
            for c, is_init in podrole.containers(pod, r):
                for cport in r.objs(c, "ports"):
                    number = r.int(cport, "containerPort")
                    if number in seen:
                        continue
                    out.append({
                        ADDRESS: join_host_port(ip, go_uint(number)),
                        podrole.CONTAINER_NAME: r.str(c, "name"),
                        podrole.CONTAINER_IMAGE: r.str(c, "image"),
                        podrole.PORT_NAME: r.str(cport, "name"),
                        podrole.PORT_NUMBER: go_uint(number),
                        podrole.PORT_PROTOCOL: r.str(cport, "protocol"),
                        podrole.CONTAINER_INIT: go_bool(is_init),
                        **podrole.pod_labels(pod, r),
                    })
        return out
