"""A synthetic cluster of realistic objects (nodes, pods with owners, probes, statuses,
services and endpoints) at any size, for benchmarks and scale tests of discovery."""

from __future__ import annotations

import hashlib
from typing import Any


def _uid(*parts: object) -> str:
    h = hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def node(i: int) -> dict[str, Any]:
    name = f"node-{i:03}"
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64", "node.kubernetes.io/instance-type": "m5.xlarge",
            "topology.kubernetes.io/zone": f"eu-west-1{'abc'[i % 3]}"},
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {"podCIDR": f"10.{100 + i // 250}.{i % 250}.0/24",
                 "providerID": f"aws:///eu-west-1a/i-{i:017x}"},
        "status": {
            "addresses": [{"type": "InternalIP", "address": f"10.1.{i // 250}.{i % 250 + 1}"},
                          {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "nodeInfo": {"kubeletVersion": "v1.31.0", "containerRuntimeVersion":
                         "containerd://1.7.20", "osImage": "Debian GNU/Linux 12 (bookworm)"},
        },
    }


def pod(i: int, nodes: int, namespaces: int = 20) -> dict[str, Any]:
    ns = f"team-{i % namespaces:02}"
    app = f"app-{(i // 10) % 50:02}"
    name = f"{app}-{hashlib.md5(str(i).encode()).hexdigest()[:10]}-{i % 100000:05}"
    ready = {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-01T10:00:00Z"}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": ns, "uid": _uid("pod", i),
            "labels": {"app.kubernetes.io/name": app, "app.kubernetes.io/instance": app,
                       "pod-template-hash": "5d8f7c9b6", "tier": "backend"},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8080"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                 "name": f"{app}-5d8f7c9b6", "uid": _uid("rs", app, ns),
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {
            "nodeName": f"node-{i % nodes:03}", "serviceAccountName": "default",
            "containers": [
                {"name": "app", "image": f"registry.example.com/{app}:1.4.{i % 7}",
                 "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                           {"name": "grpc", "containerPort": 9090, "protocol": "TCP"}],
                 "env": [{"name": "LOG_LEVEL", "value": "info"}],
                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                               "limits": {"memory": "256Mi"}},
                 "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}}},
                {"name": "sidecar", "image": "registry.example.com/proxy:2.1",
                 "ports": [{"name": "metrics", "containerPort": 15090, "protocol": "TCP"}]},
            ],
        },
        "status": {
            "phase": "Running", "podIP": f"10.{100 + (i % nodes) // 250}.{(i % nodes) % 250}."
                                         f"{i // nodes % 250 + 2}",
            "hostIP": f"10.1.{(i % nodes) // 250}.{(i % nodes) % 250 + 1}",
            "qosClass": "Burstable", "startTime": "2026-12-01T10:00:00Z",
            "conditions": [ready, {**ready, "type": "ContainersReady"},
                           {**ready, "type": "Initialized"}, {**ready, "type": "PodScheduled"}],
            "containerStatuses": [
                {"name": c, "ready": True, "restartCount": 0, "started": True,
                 "image": f"registry.example.com/{c}", "containerID":
                 f"containerd://{hashlib.sha256(f'{i}{c}'.encode()).hexdigest()}",
                 "state": {"running": {"startedAt": "2026-12-01T10:00:05Z"}}}
                for c in ("app", "sidecar")],
        },
    }


def cluster(nodes: int = 100, pods: int = 5000) -> list[dict[str, Any]]:
    """Nodes, then pods spread evenly over them."""
    return [node(i) for i in range(nodes)] + [pod(i, nodes) for i in range(pods)]
