"""prometheus.exporter.self, discovery.relabel and prometheus.relabel over the real relabel engine."""

from __future__ import annotations

import pytest

from agent import labels as lbl
from agent.components.prometheus_exporter_self import default_instance
from agent.storage import STALE_NAN, SampleBatch, is_stale_nan
from agent.syntax.diag import DiagnosticsError
from tests.components.helpers import controller, files, run

DISCOVERY = """
prometheus.exporter.self "self" { }
discovery.relabel "r" {
  targets = concat(prometheus.exporter.self.self.targets, [{"__address__" = "10.0.0.1:9100", "team" = "a"}])
  rule {
    source_labels = ["__address__"]
    regex         = "10\\\\..*"
    action        = "drop"
  }
  rule {
    target_label = "env"
    replacement  = "test"
  }
}
"""


def test_exporter_self_and_discovery_relabel(tmp_path):
    async def go():
        c = controller(tmp_path, http_address="127.0.0.1:4321")
        await c.load(files(DISCOVERY))
        await c.settle()
        (target,) = c.node("prometheus.exporter.self.self").exports.targets
        assert target == {
            "__address__": "127.0.0.1:4321",
            "__scheme__": "http",
            "__metrics_path__": "/metrics",
            "instance": default_instance(),
            "job": "integrations/self",
            "__meta_component_name": "prometheus.exporter.self",
            "__meta_component_id": "prometheus.exporter.self.self",
        }
        out = c.node("discovery.relabel.r").exports.output
        assert out == [{**target, "env": "test"}]
        assert len(c.node("discovery.relabel.r").exports.rules) == 2
        await c.stop()

    run(go())


def test_bad_rule_is_positioned(tmp_path):
    c = controller(tmp_path)
    with pytest.raises(DiagnosticsError) as exc:
        c.check(files('discovery.relabel "r" {\n  targets = []\n  rule {\n    action = "bogus"\n  }\n}\n'))
    assert [str(d) for d in exc.value.diagnostics] == ["main.alloy:3:3: unknown relabel action 'bogus'"]
    with pytest.raises(DiagnosticsError) as exc:
        c.check(files('prometheus.exporter.self "s" {\n  port = 1\n}\n'))
    assert [str(d) for d in exc.value.diagnostics] == [
        "main.alloy:2:3: component 'prometheus.exporter.self' does not take arguments or blocks"
    ]


METRIC = """
test.sink "out" { }
prometheus.relabel "r" {
  forward_to = [test.sink.out.receiver]
  rule {
    source_labels = ["__name__"]
    regex         = "drop_.*"
    action        = "drop"
  }
  rule {
    target_label = "cluster"
    replacement  = "%s"
  }
}
"""


def _batch() -> SampleBatch:
    b = SampleBatch()
    b.add(lbl.from_dict({"__name__": "keep_me", "job": "j"}), 1000, 1.5)
    b.add(lbl.from_dict({"__name__": "drop_me", "job": "j"}), 1000, 2.0)
    b.add(lbl.from_dict({"__name__": "keep_me", "job": "k"}), 1000, STALE_NAN)
    return b


def test_prometheus_relabel_rewrites_drops_and_keeps_its_receiver_across_reload(tmp_path):
    async def go():
        c = controller(tmp_path)
        await c.load(files(METRIC % "one"))
        await c.settle()
        sink = c.node("test.sink.out").component.sink
        receiver = c.node("prometheus.relabel.r").exports.receiver
        receiver.append(_batch())
        receiver.append(_batch())
        got = sink.samples()
        assert [s[0] for s in got[:2]] == [
            {"__name__": "keep_me", "job": "j", "cluster": "one"},
            {"__name__": "keep_me", "job": "k", "cluster": "one"},
        ]
        assert got[0][1:] == (1000, 1.5) and is_stale_nan(got[1][2])
        assert len(got) == 4
        info = c.node("prometheus.relabel.r").debug_info()
        assert (info["metrics_processed"], info["metrics_written"], info["cache_misses"], info["cache_hits"]) == (6, 4, 3, 3)

        await c.load(files(METRIC % "two"))
        await c.settle()
        assert c.node("prometheus.relabel.r").exports.receiver is receiver
        sink.batches.clear()
        receiver.append(_batch())
        assert sink.samples()[0][0]["cluster"] == "two"
        await c.stop()

    run(go())


def test_forward_to_must_be_receivers(tmp_path):
    c = controller(tmp_path)
    with pytest.raises(DiagnosticsError) as exc:
        c.check(files('prometheus.relabel "r" {\n  forward_to = ["nope"]\n}\n'))
    (msg,) = [str(d) for d in exc.value.diagnostics]
    assert msg.startswith("main.alloy:2:16: ") and "[0]" in msg


def test_prometheus_relabel_metrics_use_alloy_names(tmp_path):
    from prometheus_client import REGISTRY, generate_latest

    async def go():
        c = controller(tmp_path)
        await c.load(files(METRIC % "m"))
        c.node("prometheus.relabel.r").exports.receiver.append(_batch())
        text = generate_latest(REGISTRY).decode()
        assert 'alloy_prometheus_relabel_metrics_processed_total{component_id="prometheus.relabel.r"} 3.0' in text
        assert 'alloy_prometheus_relabel_metrics_written_total{component_id="prometheus.relabel.r"} 2.0' in text
        assert 'alloy_prometheus_relabel_cache_size{component_id="prometheus.relabel.r"} 3.0' in text
        await c.stop()

    run(go())
