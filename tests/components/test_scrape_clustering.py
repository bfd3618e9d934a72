"""prometheus.scrape with ``clustering { enabled = true }`` asks the process' cluster service which
targets are its own, follows ownership changes, and scrapes everything without the block.

The cluster here is a small in-test service with the interface the cluster engine
serves (owns, owner, name, seed, subscribe); the targets are real HTTP servers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from agent.runtime.controller import Controller
from agent.runtime.services import CLUSTER, HTTP, Services
from agent.server.http import HTTPInfo
from tests.components.helpers import files, make_registry, metrics_text, run
from tests.scrape.server import Exporter

CONFIG = """
test.sink "out" { }
prometheus.scrape "s" {
  targets = [
    {"__address__" = "%s"},
    {"__address__" = "%s"},
  ]
  forward_to      = [test.sink.out.receiver]
  scrape_interval = "500ms"
  scrape_timeout  = "400ms"
  clustering {
    enabled = %s
  }
}
"""


class TwoAgents:
    """This agent ("a") owns the addresses in ``mine``; "b" owns the rest."""

    name = "a"
    seed = 42

    def __init__(self, mine: set[str]) -> None:
        self.mine = mine
        self.callbacks: list[Callable[[], None]] = []
        self.reported: dict[str, set[bytes]] = {}
        self.nodes_asked: set[str] = set()

    def owns(self, key: bytes, node: str = "", at: float | None = None) -> bool:
        if node:
            self.nodes_asked.add(node)
            return node == "a"
        return any(m.encode() in key.split(b"\xff") for m in self.mine)

    def owner(self, key: bytes, node: str = "") -> str:
        return "a" if self.owns(key, node) else "b"

    def switches(self) -> tuple[float, ...]:
        return ()  # moves happen at once, by hand

    def report_targets(self, component_id: str, keys: Iterable[bytes]) -> None:
        self.reported[component_id] = set(keys)

    def forget_targets(self, component_id: str) -> None:
        self.reported.pop(component_id, None)

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback)

    def move(self, mine: set[str]) -> None:
        self.mine = mine
        for cb in list(self.callbacks):
            cb()


def scraped(c: Controller) -> set[str]:
    sink = c.node("test.sink.out").component.sink
    return {s[0]["instance"] for s in sink.samples() if s[0]["__name__"] == "up"}


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


def test_scrapes_only_owned_targets_and_follows_ownership_changes(tmp_path):
    ex = [Exporter().start() for _ in range(2)]
    for e in ex:
        e.set(body="x 1\n")
    a, b = (e.address for e in ex)
    cluster = TwoAgents({a})

    async def go():
        svc = Services(**{HTTP: HTTPInfo("127.0.0.1:12345"), CLUSTER: cluster})
        c = Controller(storage_path=tmp_path, registry=make_registry(), services=svc)
        await c.load(files(CONFIG % (a, b, "true")))
        await until(lambda: a in scraped(c))
        assert scraped(c) == {a}
        info = c.node("prometheus.scrape.s").debug_info()
        assert [t["owner"] for t in info["targets"]] == ["a"]
        assert [(t["labels"]["__address__"], t["owner"]) for t in info["targets_elsewhere"]] == [(b, "b")]
        # Every wanted target's key is reported, owned or not, for the peers' digest comparison.
        assert {k.split(b"\xff")[2] for k in cluster.reported["prometheus.scrape.s"]} == {
            a.encode(), b.encode()}

        cluster.move({b})
        sink = c.node("test.sink.out").component.sink

        def ups_of(addr: str) -> int:
            return sum(1 for s in sink.samples() if s[0]["__name__"] == "up" and s[0]["instance"] == addr)

        await until(lambda: ups_of(b) >= 1)
        before = ups_of(a)
        await asyncio.sleep(1.5)  # three intervals: a would have been scraped, or gone stale
        assert ups_of(a) == before
        text = metrics_text(c)
        assert 'prometheus_scrape_targets_moved_total{component_id="prometheus.scrape.s"} 1.0' in text
        # The overload rule's counter is there from the start, by reason (agent/scrape/loop.py).
        skipped = [ln for ln in text.splitlines() if ln.startswith("shoal_scrape_skipped_total{")]
        reasons = sorted(ln.split('reason="')[1].split('"')[0] for ln in skipped)
        assert reasons == ["backpressure", "late", "overrun"], skipped

        # Without the block (a reload), every agent scrapes every target, as in Alloy.
        await c.load(files(CONFIG % (a, b, "false")))
        await until(lambda: {a, b} <= scraped(c))
        assert len(cluster.callbacks) == 1
        assert "prometheus.scrape.s" not in cluster.reported
        await c.stop()
        assert cluster.callbacks == []

    try:
        run(go())
    finally:
        for e in ex:
            e.stop()


NODE_AFFINE = """
test.sink "out" { }
prometheus.scrape "s" {
  targets = [
    {"__address__" = "%s", "__meta_kubernetes_pod_node_name" = "a"},
    {"__address__" = "%s", "__meta_kubernetes_node_name" = "b"},
  ]
  forward_to      = [test.sink.out.receiver]
  scrape_interval = "500ms"
  clustering {
    enabled     = true
    node_affine = true
  }
}
"""


def test_node_affine_hands_each_targets_node_to_the_cluster(tmp_path):
    ex = [Exporter().start() for _ in range(2)]
    for e in ex:
        e.set(body="x 1\n")
    a, b = (e.address for e in ex)
    cluster = TwoAgents(set())  # by the ring alone this agent would own nothing

    async def go():
        svc = Services(**{HTTP: HTTPInfo("127.0.0.1:12345"), CLUSTER: cluster})
        c = Controller(storage_path=tmp_path, registry=make_registry(), services=svc)
        await c.load(files(NODE_AFFINE % (a, b)))
        await until(lambda: a in scraped(c))
        assert cluster.nodes_asked == {"a", "b"}
        info = c.node("prometheus.scrape.s").debug_info()
        assert [(t["labels"]["__address__"], t["owner"]) for t in info["targets_elsewhere"]] == [(b, "b")]
        await asyncio.sleep(1.0)
        assert scraped(c) == {a}
        await c.stop()

    try:
        run(go())
    finally:
        for e in ex:
            e.stop()
