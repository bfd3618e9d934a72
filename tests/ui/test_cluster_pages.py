"""The why-not and cluster pages with clustering on, in one process, in headless Chromium.

The cluster is the in-test service prometheus.scrape's clustering tests use
(owns, owner, name, seed, subscribe): this agent "a" owns one real target,
peer "b" the other. That service has no members, so a stand-in route answers
``/api/v0/web/peers`` in Alloy's shape for a three-agent cluster, with one
extra field, to show the page renders what the endpoint gives; the page over
three real clustered agents is tested in tests/ui/test_cluster_agents.py.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agent.runtime.controller import Controller
from agent.runtime.services import CLUSTER, HTTP, LIVE_DEBUGGING, Services
from agent.server.app import build_app
from agent.server.http import HTTPInfo, HTTPServer, bind
from agent.server.livefeed import LiveFeed
from tests.components.helpers import files, make_registry
from tests.components.test_scrape_clustering import TwoAgents
from tests.scrape.server import Exporter
from tests.ui.browser import search, shoot, text_appears

CONFIG = """
test.sink "out" { }
prometheus.scrape "s" {
  targets = [
    {"__address__" = "%s", "pod" = "mine-1"},
    {"__address__" = "%s", "pod" = "theirs-1"},
  ]
  forward_to      = [test.sink.out.receiver]
  scrape_interval = "500ms"
  clustering {
    enabled = true
  }
}
"""

PEERS = [
    {"name": "a", "addr": "10.0.0.1:12345", "isSelf": True, "state": "participant", "targets": 1,
     "targetSetMismatch": []},
    {"name": "b", "addr": "10.0.0.2:12345", "isSelf": False, "state": "participant", "targets": 1,
     "targetSetMismatch": ["prometheus.scrape.s"]},  # b sees other targets than this agent
    {"name": "c", "addr": "10.0.0.3:12345", "isSelf": False, "state": "terminating", "targets": 0,
     "targetSetMismatch": []},
]


async def peers(_: Request) -> JSONResponse:
    return JSONResponse(PEERS)


@pytest.fixture(scope="module")
def clustered(tmp_path_factory) -> Iterator[tuple[str, str, str, Path]]:
    tmp = tmp_path_factory.mktemp("cluster-ui")
    ex = [Exporter().start() for _ in range(2)]
    for e in ex:
        e.set(body="x 1\n")
    mine, theirs = (e.address for e in ex)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict = {}

    async def main() -> None:
        svc = Services(**{HTTP: HTTPInfo("127.0.0.1:0"), CLUSTER: TwoAgents({mine}), LIVE_DEBUGGING: LiveFeed()})
        c = Controller(storage_path=tmp, registry=make_registry(), services=svc)
        await c.load(files(CONFIG % (mine, theirs)))

        async def reload() -> None:
            pass

        app = build_app(c, reload, CollectorRegistry(), live=svc.get(LIVE_DEBUGGING))
        # Ahead of the real route: the in-test cluster has owners, not members.
        app.router.routes.insert(0, Route("/api/v0/web/peers", peers))
        server = HTTPServer(app, bind("127.0.0.1:0"))
        await server.start()
        box["url"] = f"http://{server.address}"
        box["stop"] = asyncio.Event()
        ready.set()
        await box["stop"].wait()
        await c.stop()
        await server.stop()

    t = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    t.start()
    assert ready.wait(30)
    try:
        yield box["url"], mine, theirs, tmp
    finally:
        loop.call_soon_threadsafe(box["stop"].set)
        t.join(15)
        for e in ex:
            e.stop()


def test_why_not_explains_a_target_owned_by_a_peer(clustered, browser):
    url, mine, theirs, tmp = clustered
    browser.get(url + "/whynot")
    search(browser, "theirs-1")
    text_appears(browser, "owned by peer b")
    shoot(browser, tmp, "whynot-peer")
    search(browser, mine)
    text_appears(browser, "scraped by prometheus.scrape.s: up")

    browser.get(url + "/targets?q=theirs-1")
    text_appears(browser, "1 of 2 targets match")
    assert "elsewhere" in browser.find_element("id", "data").text


def test_cluster_page_lists_the_peers(clustered, browser):
    url, _, _, tmp = clustered
    browser.get(url + "/clustering")
    text_appears(browser, "3 peers.")
    rows = browser.find_elements("css selector", "#data tbody tr")
    assert [r.text.split()[0] for r in rows] == ["a", "b", "c"]
    assert "terminating" in rows[2].text and "yes" in rows[0].text
    text_appears(browser, "Target sets differ from this agent's: b (prometheus.scrape.s)")
    shoot(browser, tmp, "clustering-peers")
