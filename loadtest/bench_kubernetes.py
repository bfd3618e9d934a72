"""Benchmark of Kubernetes discovery at cluster scale: 100 nodes and 5,000 pods in the stand-in.

Measures, for role pod with attach_metadata node (the DaemonSet's heaviest
shape: every pod target carries its node's metadata):
- time to the first full target set: from the discoverer's start (connect,
  list both resources in pages, build every group) to the first target list;
- memory the informers and groups hold after that, by tracemalloc (a second
  run with tracing on: allocations made under agent/discovery frames, so the
  stand-in, which runs in a thread of this process, is not counted);
- the cost of one pod change: from the object applied in the stand-in to the
  new target list handed on, wall time and CPU time of the event loop's thread
  (watch event decoding, the group's rebuild, the list of every target);
- the cost of one node change: every pod on the node rebuilt.

Usage: python loadtest/bench_kubernetes.py [--nodes 100] [--pods 5000] [--changes 50]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.discovery.informers import Informers  # noqa: E402 - after the path set-up
from agent.discovery.kubeclient import ClientSettings  # noqa: E402
from agent.discovery.kubernetes import COALESCE, Config, Discoverer  # noqa: E402
from agent.httpconfig import HTTPClientConfig, TLSConfig  # noqa: E402
from tests.kube import APIServer  # noqa: E402

TOKEN = "bench-token"


def node(i: int) -> dict[str, Any]:
    name = f"node-{i:03d}"
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name, "uid": f"00000000-0000-4000-8000-{i:012d}",
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                       "kubernetes.io/arch": "amd64", "node.kubernetes.io/instance-type": "m6i.xlarge",
                       "topology.kubernetes.io/zone": f"eu-west-1{'abc'[i % 3]}"},
            "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                            "volumes.kubernetes.io/controller-managed-attach-detach": "true"},
        },
        "spec": {"providerID": f"aws:///eu-west-1a/i-{i:017x}", "podCIDR": f"10.{i // 256}.{i % 256}.0/24"},
        "status": {
            "addresses": [{"type": "InternalIP", "address": f"10.0.{i // 256}.{i % 256}"},
                          {"type": "Hostname", "address": name}],
            "conditions": [{"type": t, "status": "False"} for t in ("MemoryPressure", "DiskPressure", "PIDPressure")]
            + [{"type": "Ready", "status": "True"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        },
    }


def pod(i: int, nodes: int) -> dict[str, Any]:
    app = f"app-{i % 250}"
    name = f"{app}-7d9f8c6b5-{i:05d}"
    ip = f"10.{100 + i // 65536}.{(i // 256) % 256}.{i % 256}"
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": f"ns-{i % 20}", "uid": f"11111111-0000-4000-8000-{i:012d}",
            "labels": {"app.kubernetes.io/name": app, "app.kubernetes.io/instance": app,
                       "app.kubernetes.io/version": "1.4.2", "pod-template-hash": "7d9f8c6b5"},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090",
                            "kubectl.kubernetes.io/restartedAt": "2026-12-01T10:00:00Z"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{app}-7d9f8c6b5",
                                 "uid": "22222222-0000-4000-8000-000000000000", "controller": True}],
        },
        "spec": {
            "nodeName": f"node-{i % nodes:03d}",
            "containers": [
                {"name": "app", "image": f"ghcr.io/example/{app}:1.4.2",
                 "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                           {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]},
                {"name": "envoy", "image": "docker.io/envoyproxy/envoy:v1.30.1",
                 "ports": [{"name": "http-envoy-prom", "containerPort": 15090, "protocol": "TCP"}]},
            ],
        },
        "status": {
            "phase": "Running", "hostIP": f"10.0.0.{i % nodes}", "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "app", "containerID": f"containerd://{i:064x}"},
                                  {"name": "envoy", "containerID": f"containerd://{i + 1:064x}"}],
        },
    }


class Watcher:
    """Receives target lists; lets the bench wait for one that satisfies a condition."""

    def __init__(self) -> None:
        self.targets: list[dict[str, str]] = []
        self.event = asyncio.Event()
        self.cpu_at_publish = 0.0

    def __call__(self, targets: list[dict[str, str]]) -> None:
        self.cpu_at_publish = time.thread_time()
        self.targets = targets
        self.event.set()

    async def until(self, cond: Any, timeout: float = 120.0, fresh: bool = False) -> None:
        """Until a target list satisfies cond; with ``fresh``, only lists handed on from now
        (so checking cond, a scan of every target, never runs before the list it waits for)."""
        deadline = time.monotonic() + timeout
        if fresh:
            self.event.clear()
        while fresh or not cond(self.targets):
            fresh = False
            self.event.clear()
            await asyncio.wait_for(self.event.wait(), max(0.0, deadline - time.monotonic()))


async def start(api: APIServer, watcher: Watcher) -> tuple[Informers, Discoverer]:
    informers = Informers()
    settings = ClientSettings(api_server=api.url, http=HTTPClientConfig(
        bearer_token=TOKEN, tls_config=TLSConfig(ca_file=str(api.certs.ca))))
    d = Discoverer(informers, settings, Config(role="pod", attach_node=True), watcher)
    await d.start()
    return informers, d


async def timing(api: APIServer, args: argparse.Namespace, pods: list[dict[str, Any]],
                 nodes: list[dict[str, Any]]) -> None:
    want = args.pods * 3
    watcher = Watcher()
    t0 = time.monotonic()
    informers, d = await start(api, watcher)
    task = asyncio.create_task(d.run())
    await watcher.until(lambda ts: len(ts) == want)
    first = time.monotonic() - t0
    print(f"first full target set: {first:.2f} s for {want:,} targets "
          f"({args.pods:,} pods, {args.nodes} nodes; list, watch set-up and build)")

    async def change(apply: Any, cond: Any) -> tuple[float, float]:
        t = time.monotonic()
        cpu = time.thread_time()
        watcher.event.clear()
        await asyncio.to_thread(apply)
        await watcher.until(cond, fresh=not watcher.event.is_set())
        return time.monotonic() - t, watcher.cpu_at_publish - cpu

    walls, cpus = [], []
    label = "__meta_kubernetes_pod_label_revision"
    for k in range(args.changes):
        p = copy.deepcopy(pods[k * 97 % len(pods)])
        p["metadata"]["labels"]["revision"] = str(k)
        wall, cpu = await change(lambda p=p: api.apply(p),
                                 lambda ts, k=k: any(t.get(label) == str(k) for t in ts))
        walls.append(wall)
        cpus.append(cpu)
    print(f"one pod change, applied to handed on: wall median {statistics.median(walls) * 1000:.1f} ms "
          f"(includes the {COALESCE * 1000:.0f} ms coalescing window), loop-thread CPU median "
          f"{statistics.median(cpus) * 1000:.1f} ms, p90 {sorted(cpus)[int(len(cpus) * 0.9)] * 1000:.1f} ms "
          f"({args.changes} changes)")

    walls, cpus = [], []
    node_label = "__meta_kubernetes_node_label_bench"
    for k in range(min(10, args.nodes)):
        n = copy.deepcopy(nodes[k])
        n["metadata"]["labels"]["bench"] = str(k)
        wall, cpu = await change(lambda n=n: api.apply(n),
                                 lambda ts, k=k: sum(t.get(node_label) == str(k) for t in ts) == want // args.nodes)
        walls.append(wall)
        cpus.append(cpu)
    print(f"one node change ({args.pods // args.nodes} pods rebuilt): wall median "
          f"{statistics.median(walls) * 1000:.1f} ms, loop-thread CPU median {statistics.median(cpus) * 1000:.1f} ms")
    task.cancel()
    await d.stop()
    await informers.stop()


async def memory(api: APIServer, args: argparse.Namespace) -> None:
    gc.collect()
    tracemalloc.start(30)
    watcher = Watcher()
    informers, d = await start(api, watcher)
    task = asyncio.create_task(d.run())
    await watcher.until(lambda ts: len(ts) == args.pods * 3, timeout=600)
    gc.collect()
    snap = tracemalloc.take_snapshot()
    tracemalloc.stop()
    task.cancel()

    def held(*patterns: str) -> int:
        # A trace counts once if any frame matches any pattern.
        f = [tracemalloc.Filter(True, p, all_frames=True) for p in patterns]
        return sum(s.size for s in snap.filter_traces(f).statistics("filename"))

    informer = held("*/agent/discovery/kubeclient.py", "*/agent/discovery/informer.py")
    total = held("*/agent/discovery/*")
    print(f"memory: informers {informer / 2**20:.1f} MiB ({informer / (args.pods + args.nodes):,.0f} B/object), "
          f"all of discovery {total / 2**20:.1f} MiB incl. groups and the exported list "
          f"({(total - informer) / (args.pods * 3):,.0f} B/target)")
    await d.stop()
    await informers.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--pods", type=int, default=5000)
    ap.add_argument("--changes", type=int, default=50)
    ap.add_argument("--no-memory", action="store_true", help="skip the tracemalloc run")
    args = ap.parse_args()
    nodes = [node(i) for i in range(args.nodes)]
    pods = [pod(i, args.nodes) for i in range(args.pods)]
    with tempfile.TemporaryDirectory() as tmp, APIServer(Path(tmp), objects=nodes + pods) as api:
        api.add_token(TOKEN)
        print(f"stand-in in a thread of this process: {threading.active_count()} threads")
        asyncio.run(timing(api, args, pods, nodes))
        if not args.no_memory:
            asyncio.run(memory(api, args))


if __name__ == "__main__":
    main()
