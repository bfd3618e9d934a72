"""The live-debugging feed with a real prometheus.scrape: it captures only while watched."""

from __future__ import annotations

import asyncio

from agent.runtime.controller import Controller
from agent.runtime.services import HTTP, LIVE_DEBUGGING, Services
from agent.server.http import HTTPInfo
from agent.server.livefeed import MAX_SAMPLES, LiveFeed
from tests.components.helpers import files, make_registry, run
from tests.scrape.server import Exporter

CONFIG = """
test.sink "out" { }
prometheus.scrape "s" {
  targets         = [{"__address__" = "%s"}, {"__address__" = "%s"}]
  forward_to      = [test.sink.out.receiver]
  scrape_interval = "100ms"
  scrape_timeout  = "90ms"
}
"""


async def until(cond, timeout: float = 10.0) -> None:  # noqa: ANN001
    for _ in range(int(timeout / 0.02)):
        if cond():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


def test_scrape_publishes_only_the_watched_target_and_only_while_watched(tmp_path):
    watched, other = Exporter().start(), Exporter().start()
    watched.set(body="a 1\n")
    other.set(body="b 2\n")
    feed = LiveFeed(watch_seconds=0.3)

    async def go():
        svc = Services(**{HTTP: HTTPInfo("127.0.0.1:12345"), LIVE_DEBUGGING: feed})
        c = Controller(storage_path=tmp_path, registry=make_registry(), services=svc)
        await c.load(files(CONFIG % (watched.address, other.address)))
        sink = c.node("test.sink.out").component.sink
        await until(lambda: len(sink.samples()) > 10)
        assert feed.watch("prometheus.scrape.s", watched.address) is None  # nothing captured unwatched

        await until(lambda: feed.watch("prometheus.scrape.s", watched.address) is not None)
        cap = feed.watch("prometheus.scrape.s", watched.address)
        names = {dict(ls)["__name__"] for ls, _, _ in cap.samples}
        assert "a" in names and "b" not in names and "up" in names
        assert all(dict(ls)["instance"] == watched.address for ls, _, _ in cap.samples)
        assert feed.status() == {"watches": [{"component": "prometheus.scrape.s", "instance": watched.address}]}

        await asyncio.sleep(0.5)  # nobody asked again: the watch lapses and its capture goes
        assert feed.watched("prometheus.scrape.s") == set()
        await asyncio.sleep(0.3)
        assert feed.watch("prometheus.scrape.s", watched.address) is None
        await c.stop()

    try:
        run(go())
    finally:
        watched.stop()
        other.stop()


def test_a_capture_is_bounded():
    feed = LiveFeed()
    feed.watch("c", "i")
    feed.publish("c", "i", [((("__name__", "x"),), 0, 1.0)] * (MAX_SAMPLES + 5))
    feed.publish("c", "other", [((("__name__", "x"),), 0, 1.0)])  # not watched: dropped
    cap = feed.watch("c", "i")
    assert len(cap.samples) == MAX_SAMPLES and cap.truncated
    assert feed.watch("c", "other") is None
