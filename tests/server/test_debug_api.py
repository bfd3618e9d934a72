"""The JSON API behind the debug pages, served by uvicorn over a real controller.

10,000 targets come from a real file through discovery.file and discovery.relabel
into prometheus.scrape (scraped hourly, so the test does not scrape them all);
the API must filter and page them on the server, refuse bad input with a reason
and count it, and serve everything under a path prefix when one is set.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry, generate_latest

from agent import labels as lbl
from agent import relabel
from agent.runtime.controller import Controller
from agent.server import debug
from agent.server.app import build_app, normalize_prefix
from agent.server.http import HTTPServer, bind
from tests.components.helpers import files, make_registry
from tests.remote.receiver import Answer, Receiver, Request
from tests.scrape.server import Exporter

N = 10_000

CONFIG = """
discovery.file "f" {
  files = ["%s"]
}
discovery.relabel "r" {
  targets = discovery.file.f.targets
  rule {
    source_labels = ["team"]
    target_label  = "owner_team"
  }
  rule {
    source_labels = ["pod"]
    regex         = "pod-\\\\d*7"
    action        = "drop"
  }
}
test.sink "out" { }
prometheus.scrape "s" {
  targets         = discovery.relabel.r.output
  forward_to      = [test.sink.out.receiver]
  scrape_interval = "1h"
  bearer_token    = "BEARER-never-shown"
}
"""


async def serve(tmp_path: Path, prefix: str = ""):  # noqa: ANN201
    sd = tmp_path / "sd.json"
    sd.write_text(json.dumps([{"targets": [f"10.1.{i // 250}.{i % 250}:9100"],
                               "labels": {"pod": f"pod-{i}", "team": f"team-{i % 10}"}} for i in range(N)]))
    c = Controller(storage_path=tmp_path, registry=make_registry())
    await c.load(files(CONFIG % sd))
    registry = CollectorRegistry()

    async def reload() -> None:
        pass

    server = HTTPServer(build_app(c, reload, registry, prefix=prefix), bind("127.0.0.1:0"))
    await server.start()
    return c, server, registry


def test_targets_are_filtered_and_paged_on_the_server(tmp_path):
    async def go():
        c, server, _ = await serve(tmp_path)
        try:
            async with httpx.AsyncClient(base_url=f"http://{server.address}", timeout=30) as http:
                t0 = time.perf_counter()
                r = (await http.get("/api/v0/web/targets", params={"limit": 50})).json()
                first = time.perf_counter() - t0
                assert r["total"] == N and r["matched"] == N and len(r["data"]) == 50
                assert r["states"]["dropped"] == 1_000
                assert sum(r["states"].get(s, 0) for s in ("unknown", "up", "down")) == 9_000

                t0 = time.perf_counter()
                r = (await http.get("/api/v0/web/targets", params={"q": "team=team-3 10.1.4."})).json()
                search = time.perf_counter() - t0
                assert r["matched"] == 25 and all(t["discovered_labels"]["team"] == "team-3" for t in r["data"])
                kept = next(t for t in r["data"] if t["health"] != "dropped")
                assert kept["labels"]["owner_team"] == "team-3"  # after relabeling
                assert "owner_team" not in kept["discovered_labels"]  # before relabeling

                r = (await http.get("/api/v0/web/targets", params={"health": "dropped", "offset": 990, "limit": 100})).json()
                assert r["matched"] == 1_000 and len(r["data"]) == 10
                assert r["data"][0]["dropped_by"] == {
                    "component": "discovery.relabel.r", "rule": 2, "action": "drop",
                    "rule_text": "action=drop source_labels=[pod] regex='pod-\\\\d*7'"}
                # Alloy's filters; without a limit every match comes back, as from Alloy.
                r = (await http.get("/api/v0/web/targets", params={"component": "prometheus.scrape.s",
                                                                    "health": "dropped"})).json()
                assert r["status"] == "success" and len(r["data"]) == 1_000
                r = (await http.get("/api/v0/web/targets", params={"job": "nope"})).json()
                assert r["data"] == []
                print(f"targets API over {N} targets: first page {first * 1000:.0f} ms, search {search * 1000:.0f} ms")

                r = (await http.get("/api/v0/web/whynot", params={"q": "pod=pod-17"})).json()
                assert r["answers"][0]["verdict"].startswith("dropped by rule 2 (drop) of discovery.relabel.r")
                r = (await http.get("/api/v0/web/whynot", params={"q": "pod=nope"})).json()
                assert r["answers"][0]["verdict"].startswith("not discovered")
                assert "BEARER-never-shown" not in (await http.get("/api/v0/web/components/prometheus.scrape.s")).text
        finally:
            await c.stop()
            await server.stop()

    asyncio.run(asyncio.wait_for(go(), 120))


def test_bad_input_is_refused_with_a_reason_and_counted(tmp_path):
    async def go():
        c, server, registry = await serve(tmp_path)
        try:
            async with httpx.AsyncClient(base_url=f"http://{server.address}") as http:
                r = await http.get("/api/v0/web/targets", params={"q": "x" * 2_000})
                assert r.status_code == 400 and "at most 1000" in r.json()["error"]
                r = await http.get("/api/v0/web/targets", params={"offset": "-1"})
                assert r.status_code == 400 and "whole number" in r.json()["error"]
                r = await http.get("/api/v0/web/whynot")
                assert r.status_code == 400
                r = await http.post("/api/v0/web/relabel", content=b"{" * 40_000)
                assert r.status_code == 413
                r = await http.post("/api/v0/web/relabel", content=b"not json")
                assert r.status_code == 400 and "not JSON" in r.json()["error"]
                r = await http.post("/api/v0/web/relabel", json={"component": "prometheus.scrape.s", "labels": 'a="b"'})
                assert r.status_code == 400 and "is not a running" in r.json()["error"]
                r = await http.post("/api/v0/web/relabel", json={"component": "discovery.relabel.r", "labels": "nothing"})
                assert r.status_code == 400 and "no labels found" in r.json()["error"]
                r = await http.get("/api/v0/web/live", params={"component": "discovery.relabel.r", "instance": "x"})
                assert r.status_code == 404  # no live feed in this app
                assert (await http.get("/component/<script>")).status_code == 404
            text = generate_latest(registry).decode()
            assert 'shoal_ui_bad_requests_total{endpoint="targets"} 2.0' in text
            assert 'shoal_ui_bad_requests_total{endpoint="relabel"} 4.0' in text
        finally:
            await c.stop()
            await server.stop()

    asyncio.run(asyncio.wait_for(go(), 120))


def test_playground_trace_is_what_the_engine_does(tmp_path):
    async def go():
        c, server, _ = await serve(tmp_path)
        try:
            async with httpx.AsyncClient(base_url=f"http://{server.address}") as http:
                assert (await http.get("/api/v0/web/relabel")).json() == [{"component": "discovery.relabel.r", "rules": 2}]
                text = '{__address__="1.2.3.4:80", pod="pod-3", team="<b>red</b>"}'
                r = (await http.post("/api/v0/web/relabel", json={"component": "discovery.relabel.r", "labels": text})).json()
                assert [s["labels"]["owner_team"] for s in r["steps"]] == ["<b>red</b>", "<b>red</b>"]
                rules = debug.rule_list(c.node("discovery.relabel.r").args.rule)
                assert r["output"] == dict(relabel.process(debug.parse_labels(text), rules))
                r = (await http.post("/api/v0/web/relabel", json={"component": "discovery.relabel.r",
                                                                 "labels": 'pod="pod-7"'})).json()
                assert r["output"] is None and r["steps"][-1] == {**r["steps"][-1], "rule": 2, "dropped": True}
        finally:
            await c.stop()
            await server.stop()

    asyncio.run(asyncio.wait_for(go(), 120))


def test_prefix_moves_the_ui_and_api_but_not_metrics_or_health(tmp_path):
    assert [normalize_prefix(p) for p in ("/", "", "shoal/", "/a/b")] == ["", "", "/shoal", "/a/b"]

    async def go():
        c, server, _ = await serve(tmp_path, prefix="/proxy/shoal/")
        try:
            async with httpx.AsyncClient(base_url=f"http://{server.address}") as http:
                page = await http.get("/proxy/shoal/targets")
                assert page.status_code == 200 and '<base href="/proxy/shoal/">' in page.text
                assert (await http.get("/proxy/shoal/api/v0/web/components")).status_code == 200
                assert (await http.get("/proxy/shoal/assets/ui.js")).status_code == 200
                assert (await http.get("/api/v0/web/components")).status_code == 404
                assert (await http.get("/metrics")).status_code == 200
                r = await http.get("/")
                assert r.status_code in (302, 307) and r.headers["location"] == "/proxy/shoal/"
                svg = (await http.get("/proxy/shoal/api/v0/web/graph.svg")).text
                assert 'href="/proxy/shoal/component/prometheus.scrape.s"' in svg
        finally:
            await c.stop()
            await server.stop()

    asyncio.run(asyncio.wait_for(go(), 120))


def test_parse_labels_accepts_the_usual_spellings():
    want = lbl.from_pairs([("a", "1"), ("b", 'x"y')])
    assert debug.parse_labels('{a="1", b="x\\"y"}') == want
    assert debug.parse_labels('a="1"\nb="x\\"y"') == want
    assert debug.parse_labels('{"a": "1", "b": "x\\"y"}') == want
    assert debug.parse_labels('{a="é\\n"}') == (("a", "é\n"),)


REJECTING = """
prometheus.scrape "s" {
  targets         = [{"__address__" = "%s", "pod" = "web-1"}]
  forward_to      = [prometheus.remote_write.db.receiver]
  scrape_interval = "200ms"
}
prometheus.remote_write "db" {
  endpoint {
    url = "%s"
  }
}
"""


def test_why_not_and_remote_write_show_a_backend_that_rejects_samples(tmp_path):
    def reject(_req: Request) -> Answer:
        return 400, {}, b"out of order sample"

    async def go():
        ex = Exporter().start()
        ex.set(body="x 1\n")
        rx = await Receiver(responder=reject).start()
        c = Controller(storage_path=tmp_path, registry=make_registry())
        await c.load(files(REJECTING % (ex.address, rx.url)))

        async def reload() -> None:
            pass

        server = HTTPServer(build_app(c, reload, CollectorRegistry()), bind("127.0.0.1:0"))
        await server.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://{server.address}") as http:
                for _ in range(200):
                    eps = (await http.get("/api/v0/web/remote_write")).json()
                    if eps and eps[0]["samples_failed"]:
                        break
                    await asyncio.sleep(0.05)
                ep = eps[0]
                assert ep["component"] == "prometheus.remote_write.db" and ep["url"] == rx.url
                assert "400" in ep["last_error"] and "out of order sample" in ep["last_error"]
                assert ep["wal_segments"] >= 1 and ep["shards"] >= 1
                # A backend refusing samples is no reason to skip scrapes (agent/remote/admission.py).
                assert ep["admission"] == {"share": 1.0, "shedding": False, "reason": ""}
                r = (await http.get("/api/v0/web/whynot", params={"q": "pod=web-1"})).json()
                assert "the backend rejects samples" in r["answers"][0]["verdict"]
                assert "400" in r["answers"][0]["verdict"]
        finally:
            await c.stop()
            await server.stop()
            await rx.stop()
            ex.stop()

    asyncio.run(asyncio.wait_for(go(), 60))
