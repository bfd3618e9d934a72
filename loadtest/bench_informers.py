"""Informers at cluster scale: N pods and M nodes in the API server stand-in (tests/kube).

Measures the engine under discovery.kubernetes: the time and CPU to the first full copy
(paged lists of pods and nodes), the memory the copies hold, and the cost of one pod
change from the API server to a subscriber. The stand-in runs in this process (its own
thread); CPU figures are the informers' thread only (time.thread_time).

Usage: python loadtest/bench_informers.py [--nodes 100] [--pods 5000] [--changes 200]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.discovery.informer import Informer, InformerKey  # noqa: E402
from agent.discovery.kubeclient import ClientSettings, connect  # noqa: E402
from agent.httpconfig import HTTPClientConfig, TLSConfig  # noqa: E402
from tests.kube import APIServer  # noqa: E402
from tests.kube.synthetic import cluster  # noqa: E402


def deep_size(o: Any, seen: set[int] | None = None) -> int:
    """Bytes held by a tree of dicts, lists and scalars (shared objects counted once)."""
    seen = set() if seen is None else seen
    if id(o) in seen:
        return 0
    seen.add(id(o))
    n = sys.getsizeof(o)
    if isinstance(o, dict):
        n += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in o.items())
    elif isinstance(o, (list, tuple)):
        n += sum(deep_size(v, seen) for v in o)
    return n


class Counter:
    def __init__(self) -> None:
        self.n = 0
        self.ev = asyncio.Event()

    def _hit(self, *_: Any) -> None:
        self.n += 1
        self.ev.set()

    on_add = on_update = on_delete = _hit


async def main(nodes: int, pods: int, changes: int) -> None:
    api = APIServer(Path(tempfile.mkdtemp()))
    objs = cluster(nodes, pods)
    for o in objs:
        api.apply(o)
    avg = sum(len(json.dumps(o)) for o in objs[nodes:]) / pods
    api.add_token("bench")
    api.start()
    client = await connect(ClientSettings(api_server=api.url, http=HTTPClientConfig(
        bearer_token="bench", tls_config=TLSConfig(ca_file=str(api.certs.ca)))))
    gc.collect()
    t0, c0 = time.perf_counter(), time.thread_time()
    infs = [Informer(client, InformerKey("", "v1", "pods")),
            Informer(client, InformerKey("", "v1", "nodes"))]
    for inf in infs:
        inf.start()
    for inf in infs:
        await inf.wait_synced(300)
    sync_s, sync_cpu = time.perf_counter() - t0, time.thread_time() - c0
    mem = sum(deep_size(inf.objects) for inf in infs)
    seen = Counter()
    infs[0].subscribe(seen)
    victim = objs[nodes]
    lat, cpu = [], 0.0
    for k in range(changes):
        n = seen.n
        seen.ev.clear()
        victim["metadata"]["labels"]["rev"] = str(k)
        c, t = time.thread_time(), time.perf_counter()
        await asyncio.to_thread(api.apply, victim)
        while seen.n == n:
            await seen.ev.wait()
            seen.ev.clear()
        lat.append(time.perf_counter() - t)
        cpu += time.thread_time() - c
    lat.sort()
    print(f"pods={pods} nodes={nodes} (average pod {avg:.0f} B of JSON)")
    print(f"first full copy: {sync_s:.2f} s wall, {sync_cpu:.2f} s informer CPU")
    print(f"copies held: {mem / 2**20:.1f} MiB, {mem / (pods + nodes):.0f} B/object")
    print(f"one pod change to a subscriber: p50 {lat[len(lat) // 2] * 1e3:.2f} ms, "
          f"p90 {lat[int(len(lat) * 0.9)] * 1e3:.2f} ms, "
          f"{cpu / changes * 1e6:.0f} us informer CPU")
    print(f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB "
          "(stand-in and informers together)")
    for inf in infs:
        await inf.stop()
    await client.close()
    api.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--pods", type=int, default=5000)
    ap.add_argument("--changes", type=int, default=200)
    a = ap.parse_args()
    asyncio.run(main(a.nodes, a.pods, a.changes))
