"""Benchmark of the operator components' engine: many ServiceMonitors in the stand-in.

Measures, with S services (each with its Endpoints and one pod) and one ServiceMonitor per
service, each monitor's bearer token in its own Secret:
- time to every job scraping: from the Manager's start (connect, list the monitors, one
  Secret informer per monitor, one endpoints discoverer per job) until every job's pool has
  its target;
- one monitor created: from the object applied to its pool having its target;
- one Secret rotated: from the object applied to the job's scrape settings using the new
  token;
- the translation alone, per monitor (no I/O).
The targets are 127.0.0.1 on a closed port: scrapes fail at once and cost nothing.

Usage: python loadtest/bench_operator.py [--services 200] [--changes 20]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.discovery.informers import Informers  # noqa: E402 - after the path set-up
from agent.discovery.kubeclient import ClientSettings  # noqa: E402
from agent.discovery.operator import Manager, translate  # noqa: E402
from agent.httpconfig import HTTPClientConfig, TLSConfig  # noqa: E402
from tests.kube import RBAC_MANIFEST, APIServer  # noqa: E402

TOKEN = "bench-token"


def objects(i: int) -> list[dict[str, Any]]:
    name, ns = f"svc-{i:04d}", f"ns-{i % 10}"
    port = [{"name": "metrics", "port": 1, "protocol": "TCP"}]
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns,
                                                              "labels": {"app": name}},
         "spec": {"clusterIP": "10.0.0.1", "ports": [dict(port[0], targetPort=1)]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{name}-0", "namespace": ns,
                                                          "labels": {"app": name}},
         "spec": {"nodeName": "n1", "containers": [{"name": "app", "ports": [
             {"name": "metrics", "containerPort": 1, "protocol": "TCP"}]}]},
         "status": {"phase": "Running", "podIP": "127.0.0.1"}},
        {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": ns},
         "subsets": [{"addresses": [{"ip": "127.0.0.1", "targetRef": {
             "kind": "Pod", "name": f"{name}-0", "namespace": ns}}], "ports": port}]},
        secret(name, ns, "t0"),
        monitor(name, ns),
    ]


def secret(name: str, ns: str, token: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
            "data": {"token": base64.b64encode(token.encode()).decode()}}


def monitor(name: str, ns: str) -> dict[str, Any]:
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"matchLabels": {"app": name}}, "endpoints": [
                {"port": "metrics", "interval": "60s",
                 "bearerTokenSecret": {"name": name, "key": "token"},
                 "relabelings": [{"targetLabel": "team", "replacement": "a"}]}]}}


class Sink:
    def append(self, batch: object) -> None:
        return None


def ms(xs: list[float]) -> str:
    return f"median {statistics.median(xs) * 1000:.0f} ms, max {max(xs) * 1000:.0f} ms"


async def bench(api: APIServer, services: int, changes: int) -> None:
    settings = ClientSettings(api_server=api.url, http=HTTPClientConfig(
        bearer_token=TOKEN, tls_config=TLSConfig(ca_file=str(api.certs.ca))))
    informers = Informers()
    m = Manager(informers, settings, "ServiceMonitor", Sink())

    def with_targets() -> int:
        return sum(1 for _, r in m.runners() if r.pool.targets())

    async def until(cond: Any) -> float:
        start = time.perf_counter()
        while not cond():
            await asyncio.sleep(0.005)
        return time.perf_counter() - start

    start = time.perf_counter()
    await m.start()
    task = asyncio.ensure_future(m.run())
    await until(lambda: with_targets() == services)
    print(f"{services} ServiceMonitors, every job scraping: {time.perf_counter() - start:.2f} s")

    created = []
    for i in range(changes):
        name, ns = f"new-{i}", "ns-0"
        for o in objects(services + i)[:4]:
            api.apply(o)
        await asyncio.sleep(0.2)
        mon = monitor(f"svc-{services + i:04d}", f"ns-{(services + i) % 10}")
        t0 = time.perf_counter()
        api.apply(mon)
        key = (mon["metadata"]["namespace"], mon["metadata"]["name"])
        await until(lambda k=key: any(r.pool.targets() for kk, r in m.runners() if kk == k))
        created.append(time.perf_counter() - t0)
        del name, ns
    print(f"one monitor created to its target scraped: {ms(created)}")

    rotated = []
    for i in range(changes):
        name, ns = f"svc-{i:04d}", f"ns-{i % 10}"
        token = f"t{i + 1}"
        t0 = time.perf_counter()
        api.apply(secret(name, ns, token))
        await until(lambda n=name, t=token: any(
            r.job.config.http.bearer_token == t for k, r in m.runners() if k[1] == n))
        rotated.append(time.perf_counter() - t0)
    print(f"one Secret rotated to the new token in use: {ms(rotated)}")

    task.cancel()
    await m.stop()
    await informers.stop()

    mon = monitor("svc-0000", "ns-0")
    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        translate(mon, lambda *a: "token")
    print(f"translation: {(time.perf_counter() - t0) / n * 1e6:.0f} µs per monitor")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=200)
    ap.add_argument("--changes", type=int, default=20)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        api = APIServer(Path(tmp), rbac_files=[RBAC_MANIFEST])
        api.add_token(TOKEN, "shoal/shoal")
        for i in range(a.services):
            for o in objects(i):
                api.apply(o)
        with api:
            asyncio.run(bench(api, a.services, a.changes))


if __name__ == "__main__":
    main()
