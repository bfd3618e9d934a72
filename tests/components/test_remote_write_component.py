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
from tests.components.helpers import controller, files, metrics_text, run

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

            # The engine's metrics live in the component's registry; the runtime adds component_id.
            text = metrics_text(c)
            cid = 'component_id="prometheus.remote_write.default"'
            assert f"prometheus_agent_samples_appended_total{{{cid}}} 1.0" in text
            assert f'prometheus_remote_storage_shards{{{cid},remote_name="prom",url="{prom.url}/api/v1/write"}} 1.0' in text
            assert "s3cret-pw" not in text

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


FULL = """
prometheus.remote_write "full" {
  external_labels = {"cluster" = "c1"}
  endpoint {
    name = "a"
    url = "http://127.0.0.1:9/api/v1/write"
    remote_timeout = "7s"
    protobuf_message = "io.prometheus.write.v2.Request"
    send_exemplars = false
    send_native_histograms = true
    enable_http2 = false
    follow_redirects = false
    proxy_url = "http://127.0.0.1:3128"
    bearer_token = "tok-secret"
    queue_config {
      capacity = 1234
      min_shards = 2
      max_shards = 7
      max_samples_per_send = 321
      batch_send_deadline = "250ms"
      min_backoff = "50ms"
      max_backoff = "9s"
      retry_on_http_429 = false
      sample_age_limit = "90s"
      catchup_request_factor = 1.2
      catchup_sample_factor = 2.5
      catchup_batch_factor = 8
    }
    metadata_config {
      send = false
      send_interval = "2m"
      max_samples_per_send = 77
    }
    write_relabel_config {
      source_labels = ["__name__"]
      regex = "drop_.*"
      action = "drop"
    }
  }
  endpoint {
    name = "b"
    url = "http://127.0.0.1:9/b"
    oauth2 {
      client_id = "cid"
      client_secret = "oauth-secret"
      scopes = ["metrics:write", "x"]
      token_url = "http://127.0.0.1:9/token"
      endpoint_params = {"audience" = "mimir"}
    }
  }
  wal {
    truncate_frequency = "30m"
    min_keepalive_time = "1m"
    max_keepalive_time = "3h"
    disk_budget = "64MiB"
  }
}
"""


def test_every_argument_reaches_the_engine(tmp_path):
    async def go():
        c = controller(tmp_path)
        await c.load(files(FULL))
        await c.settle()
        rw = c.node("prometheus.remote_write.full").exports.receiver
        a, b = rw.endpoints
        assert (a.name, a.url, a.remote_timeout) == ("a", "http://127.0.0.1:9/api/v1/write", 7.0)
        assert a.protobuf_message == "io.prometheus.write.v2.Request"
        assert (a.send_exemplars, a.send_native_histograms) == (False, True)
        assert (a.http.enable_http2, a.http.follow_redirects, a.http.proxy_url) == (False, False, "http://127.0.0.1:3128")
        assert a.http.auth_header() == "Bearer tok-secret"
        q = a.queue
        assert (q.capacity, q.min_shards, q.max_shards, q.max_samples_per_send) == (1234, 2, 7, 321)
        assert (q.batch_send_deadline, q.min_backoff, q.max_backoff) == (0.25, 0.05, 9.0)
        assert (q.retry_on_http_429, q.sample_age_limit) == (False, 90.0)
        assert (q.catchup_requests, q.catchup_samples, q.catchup_batch) == (1.2, 2.5, 8)  # Shoal's own
        assert (a.metadata.send, a.metadata.send_interval, a.metadata.max_samples_per_send) == (False, 120.0, 77)
        assert len(a.write_relabel_rules) == 1 and a.write_relabel_rules[0].action == "drop"
        # Defaults, as Alloy's.
        assert b.protobuf_message == "prometheus.WriteRequest"
        assert (b.send_exemplars, b.send_native_histograms, b.remote_timeout) == (True, False, 30.0)
        assert (b.http.enable_http2, b.http.follow_redirects) == (True, True)
        assert (b.metadata.send, b.metadata.send_interval, b.metadata.max_samples_per_send) == (True, 60.0, 2000)
        assert (b.queue.capacity, b.queue.max_shards, b.queue.min_backoff) == (10000, 50, 0.03)
        assert (b.queue.catchup_requests, b.queue.catchup_samples, b.queue.catchup_batch) == (1.5, 3.0, 4)
        o2 = b.oauth2
        assert (o2.client_id, o2.client_secret, o2.token_url) == ("cid", "oauth-secret", "http://127.0.0.1:9/token")
        assert (o2.scopes, o2.endpoint_params) == (["metrics:write", "x"], {"audience": "mimir"})
        assert "oauth-secret" not in repr(b) and "oauth-secret" not in repr(o2)
        o = rw.options
        assert (o.truncate_frequency, o.min_keepalive_time, o.max_keepalive_time) == (1800.0, 60.0, 10800.0)
        assert o.disk_budget_bytes == 64 << 20
        # The queues run with them: 2.0 chosen, min_shards shards, 429 not retried.
        for _ in range(200):
            if "a" in rw.queues:
                break
            await asyncio.sleep(0.02)
        qa = rw.queues["a"]
        assert qa.proto == "io.prometheus.write.v2.Request"
        assert len(qa.shards) == 2 and qa.client.retry_on_http_429 is False
        assert rw.wal.segment_size == 16 << 20  # a quarter of the budget
        shown = repr(alloyjson.body(c.node("prometheus.remote_write.full").args))
        assert "tok-secret" not in shown and "oauth-secret" not in shown
        await c.stop()

    run(go())


def test_disk_budget_as_a_number(tmp_path):
    async def go():
        c = controller(tmp_path)
        await c.load(files('prometheus.remote_write "n" {\n  wal {\n    disk_budget = 8388608\n  }\n}\n'))
        await c.settle()
        assert c.node("prometheus.remote_write.n").exports.receiver.options.disk_budget_bytes == 8 << 20
        await c.stop()

    run(go())


def _errors(tmp_path, src: str) -> list[str]:
    with pytest.raises(DiagnosticsError) as exc:
        controller(tmp_path).check(files(src))
    return [str(d) for d in exc.value.diagnostics]


def test_bad_arguments_are_positioned(tmp_path):
    src = """prometheus.remote_write "x" {
  endpoint {
    url = "http://h/w"
    protobuf_message = "prometheus.WriteRequestV3"
    queue_config {
      min_shards = 5
      max_shards = 2
    }
    metadata_config {
      send_interval = "0s"
    }
    oauth2 {
      client_id = "id"
      client_secret = "oauth-secret"
      client_secret_file = "/x"
      token_url = "http://h/token"
    }
  }
  wal {
    min_keepalive_time = "2h"
    max_keepalive_time = "1h"
  }
}
"""
    msgs = _errors(tmp_path, src)
    assert any(m.startswith("main.alloy:5:5: ") and "min_shards must not be greater than max_shards" in m
               for m in msgs), msgs
    assert any(m.startswith("main.alloy:9:5: ") and "send_interval must be greater than 0s" in m for m in msgs), msgs
    assert any(m.startswith("main.alloy:12:5: ") and "client_secret & client_secret_file" in m for m in msgs), msgs
    assert any(m.startswith("main.alloy:4:24: ") and '"prometheus.WriteRequest"' in m and "WriteRequestV3" in m
               for m in msgs), msgs
    assert any(m.startswith("main.alloy:19:3: ") and "min_keepalive_time must be smaller" in m for m in msgs), msgs
    assert not any("oauth-secret" in m for m in msgs)

    msgs = _errors(tmp_path, 'prometheus.remote_write "x" {\n  endpoint {\n    url = "http://h/w"\n'
                   '    queue_config {\n      catchup_request_factor = 0.5\n    }\n  }\n}\n')
    assert len(msgs) == 1 and msgs[0].startswith("main.alloy:4:5: ") and "at least 1" in msgs[0], msgs

    for budget, why in (('"lots"', '"lots" is not a size'), ('"1KiB"', "at least 4MiB"), ("-5", "non-negative"),
                        ("true", "expected")):
        msgs = _errors(tmp_path, f'prometheus.remote_write "x" {{\n  wal {{\n    disk_budget = {budget}\n  }}\n}}\n')
        assert len(msgs) == 1 and msgs[0].startswith("main.alloy:") and why in msgs[0], (budget, msgs)
