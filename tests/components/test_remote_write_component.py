"""prometheus.remote_write over the real engine, delivering to a real Prometheus."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent import labels as lbl
from agent.server import alloyjson
from agent.storage import SampleBatch
from agent.syntax.diag import DiagnosticsError
from tests import procs
from tests.components.helpers import controller, files, run

CONFIG = """
prometheus.remote_write "default" {
  external_labels = {"cluster" = "%s"}
  endpoint {
    name = "prom"
    url  = "%s/api/v1/write"
    basic_auth {
      username = "u"
      password = "s3cret-pw"
    }
    headers = {"X-Scope-OrgID" = "tenant-token"}
    queue_config {
      batch_send_deadline = "100ms"
    }
  }
  wal {
    truncate_frequency = "1h"
  }
}
"""


def _batch(name: str, value: float) -> SampleBatch:
    b = SampleBatch()
    b.add(lbl.from_dict({"__name__": name, "job": "t", "instance": "i"}), int(time.time() * 1000), value)
    return b


async def _wait_for(prom_url: str, expr: str) -> list[dict]:
    for _ in range(300):
        res = await asyncio.to_thread(procs.query, prom_url, expr)
        if res:
            return res
        await asyncio.sleep(0.1)
    raise AssertionError(f"{expr} never appeared")


@pytest.mark.integration
def test_samples_reach_prometheus_with_external_labels_and_reload_keeps_the_wal(tmp_path):
    with procs.prometheus(tmp_path / "prom") as prom:

        async def go():
            c = controller(tmp_path / "data")
            await c.load(files(CONFIG % ("one", prom.url)))
            await c.settle()
            node = c.node("prometheus.remote_write.default")
            rw = node.exports.receiver
            rw.append(_batch("shoal_test_metric", 42.0))
            (res,) = await _wait_for(prom.url, "shoal_test_metric")
            assert res["metric"] == {"__name__": "shoal_test_metric", "job": "t", "instance": "i", "cluster": "one"}
            assert res["value"][1] == "42"
            wal_dir = tmp_path / "data" / "prometheus.remote_write.default" / "wal"
            assert wal_dir.is_dir() and any(wal_dir.iterdir())

            body = alloyjson.body(node.args)
            text = repr(body) + repr(alloyjson.body(node.debug_info()))
            assert "s3cret-pw" not in text and "tenant-token" not in text
            assert "(secret)" in text

            await c.load(files(CONFIG % ("two", prom.url)))
            await c.settle()
            assert c.node("prometheus.remote_write.default").exports.receiver is rw
            assert rw.wal.directory == wal_dir
            rw.append(_batch("shoal_test_metric_2", 7.0))
            (res,) = await _wait_for(prom.url, "shoal_test_metric_2")
            assert res["metric"]["cluster"] == "two"
            await c.stop()
            assert rw._stopped

        run(go())


def test_bad_url_and_duration_are_positioned(tmp_path):
    c = controller(tmp_path)
    src = """prometheus.remote_write "x" {
  endpoint {
    url = "localhost:9090/api/v1/write"
    remote_timeout = "15x"
  }
  endpoint {
    url = "http://[::1"
  }
}
"""
    with pytest.raises(DiagnosticsError) as exc:
        c.check(files(src))
    msgs = [str(d) for d in exc.value.diagnostics]
    assert msgs[0].startswith("main.alloy:4:22: ") and "15x" in msgs[0], msgs
    assert msgs[1].startswith("main.alloy:6:3: ") and "malformed" in msgs[1], msgs
    src = 'prometheus.remote_write "x" {\n  endpoint {\n    url = "ftp://h/x"\n  }\n}\n'
    with pytest.raises(DiagnosticsError) as exc:
        c.check(files(src))
    assert [str(d) for d in exc.value.diagnostics] == [
        'main.alloy:2:3: url "ftp://h/x" must use http or https, not "ftp"'
    ]
