"""prometheus.exporter.self, discovery.relabel and prometheus.relabel over the real relabel engine."""

from __future__ import annotations

import pytest

from agent import labels as lbl
from agent.components.prometheus_exporter_self import default_instance
from agent.storage import STALE_NAN, Histogram, Metadata, SampleBatch, is_stale_nan
from agent.syntax.diag import DiagnosticsError
from tests.components.helpers import controller, files, metrics_text, run

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
    async def go():
        c = controller(tmp_path)
        await c.load(files(METRIC % "m"))
        c.node("prometheus.relabel.r").exports.receiver.append(_batch())
        text = metrics_text(c)
        assert 'alloy_prometheus_relabel_metrics_processed_total{component_id="prometheus.relabel.r"} 3.0' in text
        assert 'alloy_prometheus_relabel_metrics_written_total{component_id="prometheus.relabel.r"} 2.0' in text
        assert 'alloy_prometheus_relabel_cache_size{component_id="prometheus.relabel.r"} 3.0' in text
        await c.stop()

    run(go())


RENAME = """
test.sink "out" { }
prometheus.relabel "r" {
  forward_to = [test.sink.out.receiver]
  rule {
    source_labels = ["__name__"]
    regex         = "drop_.*"
    action        = "drop"
  }
  rule {
    source_labels = ["__name__"]
    regex         = "old_(.*)"
    target_label  = "__name__"
    replacement   = "new_$1"
  }
  rule {
    target_label = "cluster"
    replacement  = "c1"
  }
}
"""


def _mixed_batch() -> SampleBatch:
    b = SampleBatch()
    keep = lbl.from_dict({"__name__": "old_latency_count", "job": "j"})
    b.add(keep, 1000, 3.0)
    b.add(lbl.from_dict({"__name__": "drop_me", "job": "j"}), 1000, 2.0)
    hist = Histogram(count=3.0, sum=1.5, schema=0, positive_spans=((0, 1),), positive_counts=(3.0,))
    b.histograms.append((lbl.from_dict({"__name__": "old_latency", "job": "j"}), 1000, hist))
    b.histograms.append((lbl.from_dict({"__name__": "drop_hist", "job": "j"}), 1000, hist))
    b.exemplars.append((keep, 990, 0.5, lbl.from_dict({"trace_id": "abc"})))
    b.exemplars.append((lbl.from_dict({"__name__": "drop_me", "job": "j"}), 990, 1.0, lbl.from_dict({"trace_id": "x"})))
    b.metadata = {
        "old_latency": Metadata("histogram", "Latency.", "seconds"),
        "drop_me": Metadata("gauge", "Dropped.", ""),
        "drop_hist": Metadata("histogram", "Dropped too.", ""),
        "quiet": Metadata("counter", "No samples in this batch.", ""),
    }
    return b


def test_prometheus_relabel_carries_histograms_exemplars_and_metadata(tmp_path):
    async def go():
        c = controller(tmp_path)
        await c.load(files(RENAME))
        await c.settle()
        sink = c.node("test.sink.out").component.sink
        receiver = c.node("prometheus.relabel.r").exports.receiver
        batch = _mixed_batch()
        receiver.append(batch)
        receiver.append(batch)  # second time: every series is a cache hit
        assert len(sink.batches) == 2
        for out in sink.batches:
            want = {"__name__": "new_latency", "job": "j", "cluster": "c1"}
            assert [(dict(lbl.as_labels(lab)), ts, h.count) for lab, ts, h in out.histograms] == [(want, 1000, 3.0)]
            assert [(dict(lbl.as_labels(lab)), ts, v, dict(el)) for lab, ts, v, el in out.exemplars] == [
                ({"__name__": "new_latency_count", "job": "j", "cluster": "c1"}, 990, 0.5, {"trace_id": "abc"})
            ]
            assert [dict(lbl.as_labels(lab)) for lab in out.labels] == [{"__name__": "new_latency_count", "job": "j", "cluster": "c1"}]
            # Metadata follows the rename, is left out for dropped families, kept for families without samples.
            assert out.metadata == {
                "new_latency": Metadata("histogram", "Latency.", "seconds"),
                "quiet": Metadata("counter", "No samples in this batch.", ""),
            }
        # The input batch is untouched (a fan-out hands the same object to others).
        assert len(batch.histograms) == 2 and len(batch.exemplars) == 2 and "drop_me" in batch.metadata
        info = c.node("prometheus.relabel.r").debug_info()
        # Floats and histograms are metrics; one cache entry per series serves all three kinds.
        assert (info["metrics_processed"], info["metrics_written"], info["cache_misses"], info["cache_hits"]) == (8, 4, 4, 4)
        await c.stop()

    run(go())


def test_prometheus_relabel_forwards_a_histogram_only_batch(tmp_path):
    async def go():
        c = controller(tmp_path)
        await c.load(files(RENAME))
        await c.settle()
        sink = c.node("test.sink.out").component.sink
        b = SampleBatch()
        hist = Histogram(count=1.0, sum=2.0, schema=1, positive_spans=((0, 1),), positive_counts=(1.0,))
        b.histograms.append((lbl.from_dict({"__name__": "rpc", "job": "j"}), 5000, hist))
        c.node("prometheus.relabel.r").exports.receiver.append(b)
        ((lab, ts, h),) = sink.batches[0].histograms
        assert dict(lbl.as_labels(lab)) == {"__name__": "rpc", "job": "j", "cluster": "c1"} and ts == 5000 and h is hist
        await c.stop()

    run(go())
