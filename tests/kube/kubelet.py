"""A kubelet stand-in: the four metrics endpoints a DaemonSet scrapes (/metrics,
/metrics/cadvisor, /metrics/probes, /metrics/resource) over TLS, with the kubelet's token
checks: 401 without a known bearer token, 403 unless RBAC grants get on nodes/metrics (the
kubelet asks the API server the same question with a SubjectAccessReview).

The payloads carry the series and label names the real kubelet and cAdvisor expose
(container, pod, namespace, id, image, name, interface, device, probe_type, result, ...),
one set per container of the pods on this node; counters grow with time, so rates work.
"""

from __future__ import annotations

import collections
import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.kube.certs import SERVER_NAMES, CertFiles, make_certs
from tests.kube.rbac import Auth, Request
from tests.kube.serving import Served, ThreadedServer

Pods = Callable[[], Iterable[dict[str, Any]]]
TEXT = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Hit:
    path: str
    user: str
    status: int


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**kv: str) -> str:
    return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in kv.items()) + "}"


def _cid(pod_uid: str, container: str) -> str:
    return hashlib.sha256(f"{pod_uid}/{container}".encode()).hexdigest()


class Kubelet(Served):
    """Serves one node's metrics. `pods` gives the pods scheduled here (a list, or a
    callable read on every scrape, e.g. from an APIServer)."""

    def __init__(self, folder: Path | str, node: str = "node-1", *,
                 pods: Iterable[dict[str, Any]] | Pods = (), auth: Auth | None = None,
                 tokens: Iterable[str] = (), certs: CertFiles | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.node = node
        self.certs = certs or make_certs(Path(folder) / "kubelet-certs", prefix="kubelet")
        self.auth = auth
        self.tokens = set(tokens)
        self._pods: Pods = pods if callable(pods) else (lambda p=list(pods): p)
        self._started = time.time()
        self.hits: collections.deque[Hit] = collections.deque(maxlen=100_000)
        self._server = ThreadedServer(self._handle, self.certs, host, port, f"kubelet-{node}")

    @classmethod
    def for_apiserver(cls, folder: Path | str, api: Any, node: str, **kw: Any) -> Kubelet:
        """A kubelet for `node` whose pods and token checks are the API server's, with a
        serving certificate from the cluster's CA (the service account's ca.crt verifies
        it, as with kubelet serving certificates signed by the cluster)."""
        pods_res = api.resource("pods")
        kw.setdefault("certs", make_certs(api.certs.ca.parent, SERVER_NAMES + (node,),
                                          prefix=f"kubelet-{node}"))

        def pods() -> list[dict[str, Any]]:
            _, objs = api.store.snapshot(pods_res)
            return [p for p in objs if (p.get("spec") or {}).get("nodeName") == node]
        return cls(folder, node, pods=pods, auth=api.auth, **kw)

    # -- HTTP ---------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        status, user = self._check(request)
        self.hits.append(Hit(request.path, user, status))
        if status == 401:
            return web.Response(status=401, text="Unauthorized")
        if status == 403:
            return web.Response(status=403, text=(
                f"Forbidden (user={user}, verb=get, resource=nodes, subresource=metrics)"))
        if request.path == "/healthz":
            return web.Response(text="ok")
        body = {
            "/metrics": self.kubelet_metrics,
            "/metrics/cadvisor": self.cadvisor_metrics,
            "/metrics/probes": self.probe_metrics,
            "/metrics/resource": self.resource_metrics,
        }.get(request.path)
        if body is None:
            return web.Response(status=404, text="404 page not found")
        return web.Response(body=body().encode(), headers={"Content-Type": TEXT})

    def _check(self, request: web.Request) -> tuple[int, str]:
        header = request.headers.get("Authorization", "")
        if self.auth is not None:
            user = self.auth.authenticate(header)
            if user is None:
                return 401, ""
            if request.path.startswith("/metrics") and not self.auth.authorize(
                    user, Request("get", "", "nodes", "metrics", "", self.node)):
                return 403, user.name
            return 200, user.name
        token = header[len("Bearer "):] if header.startswith("Bearer ") else ""
        if not token or (self.tokens and token not in self.tokens):
            return 401, ""
        return 200, "token"

    # -- payloads ----------------------------------------------------------------------
    def _containers(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        out = []
        for pod in self._pods():
            spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
            for c in spec.get("containers") or ():
                if isinstance(c, dict) and c.get("name"):
                    out.append((pod, c))
        return out

    def _elapsed(self) -> float:
        return time.time() - self._started

    def kubelet_metrics(self) -> str:
        cs = self._containers()
        pods = {id(p) for p, _ in cs}
        t = self._elapsed()
        lines = [
            "# HELP kubelet_node_name [ALPHA] The node's name. The count is always 1.",
            "# TYPE kubelet_node_name gauge",
            f"kubelet_node_name{_labels(node=self.node)} 1",
            "# HELP kubelet_running_pods [ALPHA] Number of pods that have a running pod sandbox",
            "# TYPE kubelet_running_pods gauge",
            f"kubelet_running_pods {len(pods)}",
            "# HELP kubelet_running_containers [ALPHA] Number of containers currently running",
            "# TYPE kubelet_running_containers gauge",
            f'kubelet_running_containers{{container_state="running"}} {len(cs)}',
            'kubelet_running_containers{container_state="exited"} 0',
            "# HELP kubelet_pod_start_duration_seconds [ALPHA] Duration in seconds from "
            "kubelet seeing a pod for the first time to the pod starting to run",
            "# TYPE kubelet_pod_start_duration_seconds histogram",
        ]
        for le, n in (("0.5", 0), ("1", 1), ("5", len(pods)), ("+Inf", len(pods))):
            lines.append(f'kubelet_pod_start_duration_seconds_bucket{{le="{le}"}} {n}')
        lines += [
            f"kubelet_pod_start_duration_seconds_sum {1.7 * len(pods):.3f}",
            f"kubelet_pod_start_duration_seconds_count {len(pods)}",
            "# HELP rest_client_requests_total [ALPHA] Number of HTTP requests, partitioned "
            "by status code, method, and host.",
            "# TYPE rest_client_requests_total counter",
            f'rest_client_requests_total{{code="200",host="10.96.0.1:443",method="GET"}} '
            f"{int(100 + t * 3)}",
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.",
            "# TYPE process_cpu_seconds_total counter",
            f"process_cpu_seconds_total {t * 0.02:.3f}",
            "# HELP go_goroutines Number of goroutines that currently exist.",
            "# TYPE go_goroutines gauge",
            "go_goroutines 312",
        ]
        return "\n".join(lines) + "\n"

    def cadvisor_metrics(self) -> str:
        ts = int(time.time() * 1000)
        t = self._elapsed()
        cpu, mem, net, fs = [], [], [], []
        for pod, c in self._containers():
            meta = pod.get("metadata") or {}
            uid = str(meta.get("uid", meta.get("name", "")))
            pod_id = f"/kubepods/burstable/pod{uid}"
            cid = _cid(uid, c["name"])
            lab = dict(container=c["name"], id=f"{pod_id}/{cid}", image=str(c.get("image", "")),
                       name=cid, namespace=str(meta.get("namespace", "")),
                       pod=str(meta.get("name", "")))
            cpu.append(f'container_cpu_usage_seconds_total{_labels(**lab, cpu="total")} '
                       f"{0.01 * t + 1:.6f} {ts}")
            mem.append(f"container_memory_working_set_bytes{_labels(**lab)} 2.4576e+07 {ts}")
            fs.append(f"container_fs_usage_bytes{_labels(**lab, device='/dev/sda1')} "
                      f"40960 {ts}")
            sandbox = dict(container="", id=pod_id, image="", name="",
                           namespace=lab["namespace"], pod=lab["pod"])
            net.append(f"container_network_receive_bytes_total"
                       f"{_labels(**sandbox, interface='eth0')} {int(1000 * t)} {ts}")
        lines = [
            "# HELP cadvisor_version_info A metric with a constant '1' value labeled by "
            "kernel version, OS version, docker version, cadvisor version & cadvisor revision.",
            "# TYPE cadvisor_version_info gauge",
            'cadvisor_version_info{cadvisorRevision="",cadvisorVersion="",dockerVersion="",'
            'kernelVersion="6.1.0-18-amd64",osVersion="Debian GNU/Linux 12 (bookworm)"} 1',
            "# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed in seconds.",
            "# TYPE container_cpu_usage_seconds_total counter", *cpu,
            "# HELP container_fs_usage_bytes Number of bytes that are consumed by the "
            "container on this filesystem.",
            "# TYPE container_fs_usage_bytes gauge", *fs,
            "# HELP container_memory_working_set_bytes Current working set in bytes.",
            "# TYPE container_memory_working_set_bytes gauge", *mem,
            "# HELP container_network_receive_bytes_total Cumulative count of bytes received",
            "# TYPE container_network_receive_bytes_total counter", *net,
            "# HELP machine_cpu_cores Number of logical CPU cores.",
            "# TYPE machine_cpu_cores gauge",
            f'machine_cpu_cores{_labels(boot_id="b0", machine_id="m0", system_uuid="u0")} 4',
            "# HELP machine_memory_bytes Amount of memory installed on the machine.",
            "# TYPE machine_memory_bytes gauge",
            f'machine_memory_bytes{_labels(boot_id="b0", machine_id="m0", system_uuid="u0")} '
            "1.6777216e+10",
        ]
        return "\n".join(lines) + "\n"

    def probe_metrics(self) -> str:
        lines = ["# HELP prober_probe_total [ALPHA] Cumulative number of a liveness, readiness "
                 "or startup probe for a container by result.",
                 "# TYPE prober_probe_total counter"]
        n = int(self._elapsed() / 10) + 1
        for pod, c in self._containers():
            meta = pod.get("metadata") or {}
            for probe in ("Liveness", "Readiness"):
                lab = _labels(container=c["name"], namespace=str(meta.get("namespace", "")),
                              pod=str(meta.get("name", "")), pod_uid=str(meta.get("uid", "")),
                              probe_type=probe, result="successful")
                lines.append(f"prober_probe_total{lab} {n}")
        return "\n".join(lines) + "\n"

    def resource_metrics(self) -> str:
        ts = int(time.time() * 1000)
        t = self._elapsed()
        cpu, mem, pcpu = [], [], []
        seen: set[tuple[str, str]] = set()
        for pod, c in self._containers():
            meta = pod.get("metadata") or {}
            ns, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
            lab = _labels(container=c["name"], namespace=ns, pod=name)
            cpu.append(f"container_cpu_usage_seconds_total{lab} {0.01 * t + 1:.6f} {ts}")
            mem.append(f"container_memory_working_set_bytes{lab} 2.4576e+07 {ts}")
            if (ns, name) not in seen:
                seen.add((ns, name))
                pcpu.append(f"pod_cpu_usage_seconds_total{_labels(namespace=ns, pod=name)} "
                            f"{0.01 * t + 1:.6f} {ts}")
        lines = [
            "# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed "
            "by the container in core-seconds",
            "# TYPE container_cpu_usage_seconds_total counter", *cpu,
            "# HELP container_memory_working_set_bytes [STABLE] Current working set of the "
            "container in bytes",
            "# TYPE container_memory_working_set_bytes gauge", *mem,
            "# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the "
            "node in core-seconds",
            "# TYPE node_cpu_usage_seconds_total counter",
            f"node_cpu_usage_seconds_total {0.2 * t + 100:.6f} {ts}",
            "# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in "
            "bytes",
            "# TYPE node_memory_working_set_bytes gauge",
            f"node_memory_working_set_bytes 2.147483648e+09 {ts}",
            "# HELP pod_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the "
            "pod in core-seconds",
            "# TYPE pod_cpu_usage_seconds_total counter", *pcpu,
            "# HELP scrape_error [ALPHA] 1 if there was an error while getting container "
            "metrics, 0 otherwise",
            "# TYPE scrape_error gauge",
            "scrape_error 0",
        ]
        return "\n".join(lines) + "\n"
