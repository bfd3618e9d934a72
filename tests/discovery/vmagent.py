"""vmagent as the reference Kubernetes discovery: run it against the stand-in, read what it found.

vmagent (Debian's victoria-metrics, 1.79) implements Prometheus' Kubernetes
discovery with the same meta labels, as of Prometheus 2.3x. ``discovered``
returns, per job, the discovered labels of every target it kept or dropped;
``to_vmagent_1_79`` says where Prometheus today (which we follow) and vmagent
1.79 differ, so a test can compare the rest label for label.
"""

from __future__ import annotations

import collections
import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import yaml

from agent.discovery.roles._meta import Lookups, Reader, node_meta_labels
from tests.procs import Proc, eventually, free_port, spawn, wait_http

M = "__meta_kubernetes_"
# Labels vmagent adds to every target from the scrape config, not from discovery.
SCRAPE_LABELS = ("job", "__metrics_path__", "__scheme__", "__scrape_interval__", "__scrape_timeout__")


@contextlib.contextmanager
def vmagent(workdir: Path, jobs: dict[str, dict]) -> Iterator[Proc]:
    """vmagent with one scrape job per entry of ``jobs`` (job name to kubernetes_sd_config).

    A labelmap keeps every meta label on the target, so targets that differ only
    in meta labels are not merged as duplicates.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    config = {"scrape_configs": [
        {
            "job_name": name,
            "scrape_interval": "1h",
            "kubernetes_sd_configs": [sd],
            "relabel_configs": [{"action": "labelmap", "regex": M + "(.+)", "replacement": "m_$1"}],
        }
        for name, sd in jobs.items()
    ]}
    (workdir / "vmagent.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    p = spawn([
        "vmagent",
        f"-promscrape.config={workdir / 'vmagent.yml'}",
        f"-httpListenAddr=127.0.0.1:{port}",
        # Nothing listens there: only discovery is looked at.
        "-remoteWrite.url=http://127.0.0.1:9/api/v1/write",
        f"-remoteWrite.tmpDataPath={workdir / 'vmagent-queue'}",
        "-promscrape.kubernetesSDCheckInterval=1s",
    ], workdir, "vmagent")
    p.url = f"http://127.0.0.1:{port}"
    try:
        wait_http(p.url + "/health", proc=p.popen)
        yield p
    finally:
        p.stop()


def discovered(p: Proc, expect: dict[str, int]) -> dict[str, list[dict[str, str]]]:
    """Discovered labels per job, once each job has the number of targets expected."""
    def read() -> dict[str, list[dict[str, str]]] | None:
        data = httpx.get(p.url + "/api/v1/targets", timeout=5).json()["data"]
        out: dict[str, list[dict[str, str]]] = collections.defaultdict(list)
        for t in data["activeTargets"] + data["droppedTargets"]:
            labels = dict(t["discoveredLabels"])
            job = labels["job"]
            for k in SCRAPE_LABELS:
                labels.pop(k, None)
            out[job].append(labels)
        got = {job: len(ts) for job, ts in out.items()}
        return out if all(got.get(j) == n for j, n in expect.items()) else None
    return eventually(read, timeout=30)


# Labels Prometheus added after the version vmagent 1.79 follows.
NEWER = re.compile(
    M + r"(node_condition_.*|pod_container_id|service_port_number|service_loadbalancer_ip"
    r"|endpointslice_endpoint_(conditions_serving|conditions_terminating|node_name|zone)"
    r"|endpointslice_endpoint_topology_.*)$"
)
POD_CONTAINER = (M + "pod_container_name", M + "pod_container_port_name",
                 M + "pod_container_port_number", M + "pod_container_port_protocol")


def to_vmagent_1_79(role: str, target: dict[str, str], lookups: Lookups) -> dict[str, str] | None:
    """Our target (Prometheus today) as vmagent 1.79 builds it; None where it builds none.

    The differences, each seen in vmagent's output for objects.yaml and edge_objects.yaml:
    - labels Prometheus added since (``NEWER``), and the container image on
      pod and endpoints targets (pod: ``pod_container_image``; vmagent has
      ``pod_container_init`` on pod targets but neither on endpoints targets);
    - an endpoints target's container port protocol is the container port's
      in vmagent, the endpoint port's in Prometheus;
    - attach_metadata node on an address without nodeName: Prometheus takes the
      node of a Node targetRef, vmagent none; and for a pod's address vmagent
      takes the pod's node, Prometheus none;
    - an endpointslice endpoint without ``conditions.ready``, or a port without
      name or protocol: Prometheus sets no label (the fields are pointers),
      vmagent sets ready "false" and the port's name and protocol empty;
    - targets for container ports no endpoint covered: vmagent skips init
      containers, leaves off the endpoints/endpointslice object's own labels,
      and attaches node metadata to them; Prometheus does the opposite.
    """
    t = {k: v for k, v in target.items() if not NEWER.match(k)}
    t.pop(M + "pod_container_image", None)
    if role not in ("endpoints", "endpointslice"):
        return t
    t.pop(M + "pod_container_init", None)
    port_label = M + ("endpoint_port_name" if role == "endpoints" else "endpointslice_port")
    pod = lookups.pods.get(f"{target.get(M + 'namespace')}/{target.get(M + 'pod_name')}")
    if port_label in target and lookups.nodes is not None:
        # vmagent's node for an address: its nodeName, else its pod's; never a Node targetRef.
        node = target.get(M + ("endpoint_node_name" if role == "endpoints" else "endpointslice_endpoint_node_name"))
        if node is None and pod is not None:
            node = pod["spec"].get("nodeName")
        t = {k: v for k, v in t.items() if not k.startswith(M + "node_")}
        t.update(node_meta_labels(lookups, Reader([]), node))
    if port_label not in target and pod is not None:  # a port no endpoint covered
        if target.get(M + "pod_container_init") == "true":
            return None
        for k in list(t):
            if k.startswith(f"{M}{role}_"):
                del t[k]
        t.update(node_meta_labels(lookups, Reader([]), pod["spec"].get("nodeName")))
    elif role == "endpointslice" and port_label in target:
        for label in ("endpoint_conditions_ready", "port_name", "port_protocol"):
            t.setdefault(f"{M}endpointslice_{label}", "false" if label.startswith("endpoint_") else "")
    if role == "endpoints" and port_label in target and pod is not None and M + "pod_container_name" in t:
        t[M + "pod_container_port_protocol"] = _container_protocol(pod, target)
    return t


def vmagent_only(role: str, labels: dict[str, str]) -> dict[str, str]:
    """vmagent's labels without those Prometheus never sets: the service's cluster IP and
    type on endpoints and endpointslice targets, an empty class on an ingress without one."""
    t = dict(labels)
    if role in ("endpoints", "endpointslice"):
        t.pop(M + "service_cluster_ip", None)
        t.pop(M + "service_type", None)
    if role == "ingress" and t.get(M + "ingress_class_name") == "":
        del t[M + "ingress_class_name"]
    return t


def _container_protocol(pod: dict, target: dict[str, str]) -> str:
    for c in pod["spec"].get("containers", []):
        if c["name"] == target[M + "pod_container_name"]:
            for p in c.get("ports", []):
                if p.get("name", "") == target[M + "pod_container_port_name"]:
                    return p.get("protocol", "")
    return ""
