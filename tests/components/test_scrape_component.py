"""prometheus.scrape over the real scrape engine, against a real node exporter and a dead port."""

from __future__ import annotations

import asyncio
import math

import pytest

from agent.syntax.diag import DiagnosticsError
from tests import procs
from tests.components.helpers import controller, files, run

CONFIG = """
test.sink "out" { }
prometheus.scrape "node" {
  targets = [
    {"__address__" = "%s", "team" = "infra"},
    {"__address__" = "127.0.0.1:%d"},
  ]
  forward_to      = [test.sink.out.receiver]
  scrape_interval = "1s"
  bearer_token    = "tok-123"
}
"""


@pytest.mark.integration
def test_scrapes_node_exporter_and_marks_a_dead_target_down(tmp_path):
    dead = procs.free_port()
    with procs.node_exporter(tmp_path / "ne") as ne:
        addr = ne.url.removeprefix("http://")

        async def go():
            c = controller(tmp_path / "data")
            await c.load(files(CONFIG % (addr, dead)))
            await c.settle()
            sink = c.node("test.sink.out").component.sink
            for _ in range(200):
                ups = {s[0]["instance"]: s[2] for s in sink.samples() if s[0]["__name__"] == "up"}
                if len(ups) == 2:
                    break
                await asyncio.sleep(0.05)
            assert ups == {addr: 1.0, f"127.0.0.1:{dead}": 0.0}
            names = {s[0]["__name__"] for s in sink.samples() if s[0]["instance"] == addr}
            assert {"node_exporter_build_info", "scrape_duration_seconds", "scrape_samples_scraped"} <= names
            build = next(s for s in sink.samples() if s[0]["__name__"] == "node_exporter_build_info")
            assert build[0]["job"] == "prometheus.scrape.node" and build[0]["team"] == "infra"
            assert build[2] == 1.0 and not math.isnan(build[2])

            info = c.node("prometheus.scrape.node").debug_info()
            by_url = {t["url"]: t for t in info["targets"]}
            assert by_url[f"http://{addr}/metrics"]["health"] == "up"
            down = by_url[f"http://127.0.0.1:{dead}/metrics"]
            assert down["health"] == "down" and down["last_error"]
            assert "tok-123" not in repr(info)

            # Reload with a new target: the pool is updated in place.
            comp = c.node("prometheus.scrape.node").component
            await c.load(files(CONFIG.replace('"team" = "infra"', '"team" = "platform"') % (addr, dead)))
            await c.settle()
            assert c.node("prometheus.scrape.node").component is comp
            sink.batches.clear()
            for _ in range(200):
                teams = {s[0].get("team") for s in sink.samples() if s[0]["__name__"] == "up"}
                if "platform" in teams:
                    break
                await asyncio.sleep(0.05)
            assert "platform" in teams
            await c.stop()

        run(go())


def test_scrape_argument_errors(tmp_path):
    c = controller(tmp_path)
    src = """test.sink "out" { }
prometheus.scrape "x" {
  targets         = []
  forward_to      = [test.sink.out.receiver]
  scrape_interval = "15x"
}
prometheus.scrape "y" {
  targets         = []
  forward_to      = [test.sink.out.receiver]
  scrape_interval = "5s"
  scrape_timeout  = "10s"
  bearer_token    = "a"
  basic_auth {
    username = "u"
  }
}
prometheus.scrape "z" {
  forward_to = []
  job = "j"
}
"""
    with pytest.raises(DiagnosticsError) as exc:
        c.check(files(src))
    msgs = [str(d) for d in exc.value.diagnostics]
    assert msgs[0] == 'main.alloy:5:21: invalid duration "15x"' or msgs[0].startswith("main.alloy:5:21: "), msgs
    assert msgs[1].startswith("main.alloy:7:1: at most one of basic_auth, bearer_token"), msgs
    assert 'main.alloy:19:3: unrecognized attribute name "job"' in msgs
    assert 'main.alloy:17:1: missing required attribute "targets"' in msgs
