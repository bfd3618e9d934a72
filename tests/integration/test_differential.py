"""Issue 4's differential proof: Shoal and Prometheus' agent mode produce the same series.

The same real exporters (a real node exporter, and tests/targets.py serving
the conformance payloads: node_exporter's e2e fixture, the synthetic kube
payload, Prometheus' text and OpenMetrics test data, one of them gzipped) are
scraped by `shoal run` and by `prometheus --enable-feature=agent` with the
same target relabeling and metric relabeling, written below side by side
(Alloy's ``discovery.relabel`` + ``prometheus.relabel`` and Prometheus'
``relabel_configs`` + ``metric_relabel_configs``). Both remote-write into one
real Prometheus, as ``agent="shoal"`` and ``agent="prometheus"``. Then:

- the series sets, without the ``agent`` label, are identical;
- for the static payloads every value is identical (NaN included), and so are
  ``up``, ``scrape_samples_scraped`` and ``scrape_series_added``; for the live
  node exporter the values of series that do not move;
- ``scrape_samples_post_metric_relabeling`` differs by design: Alloy relabels
  metrics in a separate component after the scrape, so the scrape reports
  what it scraped, where Prometheus counts what its metric_relabel_configs kept;
- both sent the same ``X-Prometheus-Scrape-Timeout-Seconds`` to the targets.

The metric rules leave ``up`` and the other scrape series alone (or undo what
they do to them, as with hashmod), because ``prometheus.relabel`` sees those
series and ``metric_relabel_configs`` does not.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest

from tests import procs
from tests.conftest import CONFORMANCE
from tests.targets import OPENMETRICS, TEXT, Target

pytestmark = pytest.mark.integration

EXPO = CONFORMANCE / "exposition"
PAYLOADS: dict[str, tuple[Path, str, bool]] = {  # payload label -> (file, Content-Type, gzip)
    "node_fixture": (CONFORMANCE / "payloads" / "node_exporter_linux_e2e-output.txt", TEXT, False),
    "kube": (CONFORMANCE / "payloads" / "synthetic-kube-2000.prom", TEXT, False),
    "alltypes": (EXPO / "prometheus-textparse" / "alltypes.237mfs.prom.txt", TEXT, False),
    "promtest": (EXPO / "prometheus-textparse" / "promtestdata.txt", TEXT, False),
    "expfmt": (EXPO / "prometheus-common-expfmt" / "text", TEXT, True),
    "om_alltypes": (EXPO / "prometheus-textparse" / "alltypes.5mfs.om.txt", OPENMETRICS, False),
    "om_histogram": (EXPO / "prometheus-textparse" / "1histogram.om.txt", OPENMETRICS, False),
}
# Series repeated within one response: the same line twice, and one label set spelled two ways.
DUPLICATES = """# TYPE dup_series gauge
dup_series{a="1"} 1
dup_series{a="1"} 2
dup_series{a="2"} 3
dup_order{a="1",b="2"} 5
dup_order{b="2",a="1"} 6
dup_empty{a="1",b=""} 7
dup_empty{a="1"} 8
"""
REPORT = (
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
)
# Node exporter series whose values do not change while the test runs.
NODE_STABLE = (
    "node_exporter_build_info",
    "node_memory_MemTotal_bytes",
    "node_boot_time_seconds",
    "node_os_info",
    "node_uname_info",
    "node_time_zone_offset_seconds",
    "up",
    "scrape_samples_scraped",
)

# ---------------------------------------------------------------- the two configurations

ALLOY = """
discovery.relabel "targets" {
  targets = [TARGETS]

  rule {
    source_labels = ["skip"]
    regex         = "yes"
    action        = "drop"
  }
  rule {
    source_labels = ["__address__"]
    regex         = "127\\\\.0\\\\.0\\\\.1:[0-9]+"
    action        = "keep"
  }
  rule {
    regex  = "__meta_(.+)"
    action = "labelmap"
  }
  rule {
    regex  = "team"
    action = "labeldrop"
  }
  rule {
    source_labels = ["__address__"]
    modulus       = 8
    target_label  = "__tmp_hash"
    action        = "hashmod"
  }
  rule {
    source_labels = ["__tmp_hash", "payload"]
    separator     = "/"
    regex         = "(.+)/(.+)"
    target_label  = "shard"
    replacement   = "${2}-$1"
  }
  rule {
    source_labels = ["__address__"]
    regex         = ".*:([0-9]+)"
    target_label  = "port"
  }
}

prometheus.scrape "diff" {
  targets         = discovery.relabel.targets.output
  job_name        = "diff"
  forward_to      = [prometheus.relabel.metrics.receiver]
  scrape_interval = "1s"
  scrape_timeout  = "900ms"
}

prometheus.relabel "metrics" {
  forward_to = [prometheus.remote_write.rx.receiver]

  rule {
    source_labels = ["__name__"]
    regex         = "node_scrape_collector_duration_seconds|go_gc_duration_seconds.*"
    action        = "drop"
  }
  rule {
    source_labels = ["__name__", "quantile"]
    regex         = "[^;]+;(|0\\\\.5|0\\\\.99)"
    action        = "keep"
  }
  rule {
    source_labels = ["__name__", "device"]
    separator     = "@"
    regex         = "node_(?P<sub>[a-z]+)_.*@(.+)"
    target_label  = "dev"
    replacement   = "${sub}:$2"
  }
  rule {
    regex       = "(code|method)"
    replacement = "http_${1}"
    action      = "labelmap"
  }
  rule {
    regex  = "goversion|tags"
    action = "labeldrop"
  }
  rule {
    source_labels = ["__name__"]
    modulus       = 4
    target_label  = "__tmp_mod"
    action        = "hashmod"
  }
  rule {
    source_labels = ["__tmp_mod", "__name__"]
    regex         = "0;(kube|container|prometheus)_.*"
    action        = "drop"
  }
  rule {
    regex  = "__tmp_mod"
    action = "labeldrop"
  }
}

prometheus.remote_write "rx" {
  external_labels = {"agent" = "shoal"}
  endpoint {
    url = "RECEIVER/api/v1/write"
    queue_config {
      batch_send_deadline = "200ms"
    }
  }
}
"""

PROMETHEUS = """
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  external_labels:
    agent: prometheus

scrape_configs:
  - job_name: diff
    static_configs: STATIC_CONFIGS
    relabel_configs:
      - source_labels: [skip]
        regex: "yes"
        action: drop
      - source_labels: [__address__]
        regex: "127\\\\.0\\\\.0\\\\.1:[0-9]+"
        action: keep
      - regex: "__meta_(.+)"
        action: labelmap
      - regex: team
        action: labeldrop
      - source_labels: [__address__]
        modulus: 8
        target_label: __tmp_hash
        action: hashmod
      - source_labels: [__tmp_hash, payload]
        separator: /
        regex: "(.+)/(.+)"
        target_label: shard
        replacement: "${2}-$1"
      - source_labels: [__address__]
        regex: ".*:([0-9]+)"
        target_label: port
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: "node_scrape_collector_duration_seconds|go_gc_duration_seconds.*"
        action: drop
      - source_labels: [__name__, quantile]
        regex: "[^;]+;(|0\\\\.5|0\\\\.99)"
        action: keep
      - source_labels: [__name__, device]
        separator: "@"
        regex: "node_(?P<sub>[a-z]+)_.*@(.+)"
        target_label: dev
        replacement: "${sub}:$2"
      - regex: "(code|method)"
        replacement: "http_${1}"
        action: labelmap
      - regex: "goversion|tags"
        action: labeldrop
      - source_labels: [__name__]
        modulus: 4
        target_label: __tmp_mod
        action: hashmod
      - source_labels: [__tmp_mod, __name__]
        regex: "0;(kube|container|prometheus)_.*"
        action: drop
      - regex: __tmp_mod
        action: labeldrop

remote_write:
  - url: RECEIVER/api/v1/write
    queue_config:
      batch_send_deadline: 200ms
"""


def target_labels(targets: dict[str, str]) -> list[dict[str, str]]:
    """Discovered targets, as both agents get them: payload name -> address, plus one to drop."""
    out = []
    for name, addr in targets.items():
        labels = {"__meta_env": "prod", "__meta_team": "infra", "payload": name}
        if name == "skipped":
            labels = {"skip": "yes", "payload": name}
        out.append({"__address__": addr, **labels})
    return out


def alloy_config(receiver: str, targets: dict[str, str]) -> str:
    items = []
    for t in target_labels(targets):
        items.append("{" + ", ".join(f'"{k}" = "{v}"' for k, v in t.items()) + "}")
    return ALLOY.replace("TARGETS", ", ".join(items)).replace("RECEIVER", receiver)


def prometheus_config(receiver: str, targets: dict[str, str]) -> str:
    static = []
    for t in target_labels(targets):
        addr = t.pop("__address__")
        static.append({"targets": [addr], "labels": t})
    # JSON is YAML: the static_configs list goes in as a flow sequence.
    return PROMETHEUS.replace("STATIC_CONFIGS", json.dumps(static)).replace("RECEIVER", receiver)


# ---------------------------------------------------------------- reading back


def series(prom_url: str, agent: str) -> dict[frozenset, str]:
    """Every current series one agent wrote, labels without ``agent`` -> value text."""
    out = {}
    for r in procs.query(prom_url, f'{{agent="{agent}",job="diff"}}'):
        m = dict(r["metric"])
        del m["agent"]
        key = frozenset(m.items())
        assert key not in out, m
        out[key] = r["value"][1]
    return out


def by_payload(ss: dict[frozenset, str]) -> dict[str, dict[frozenset, str]]:
    out: dict[str, dict[frozenset, str]] = {}
    for k, v in ss.items():
        out.setdefault(dict(k).get("payload", "?"), {})[k] = v
    return out


def name(k: frozenset) -> str:
    return dict(k)["__name__"]


def same_value(a: str, b: str) -> bool:
    return a == b or (math.isnan(float(a)) and math.isnan(float(b)))


def diff_report(a: dict[frozenset, str], b: dict[frozenset, str], limit: int = 8) -> str:
    only_a = [dict(k) for k in a.keys() - b.keys()][:limit]
    only_b = [dict(k) for k in b.keys() - a.keys()][:limit]
    return f"only shoal ({len(a.keys() - b.keys())}): {only_a}\nonly prometheus ({len(b.keys() - a.keys())}): {only_b}"


# ---------------------------------------------------------------- the test


def test_shoal_and_prometheus_agent_write_the_same_series(tmp_path: Path) -> None:
    targets = {n: Target.from_file(p, ctype, gzip=gz) for n, (p, ctype, gz) in PAYLOADS.items()}
    targets["duplicates"] = Target(DUPLICATES)
    targets["skipped"] = Target("should_not_be_scraped 1\n")
    for t in targets.values():
        t.start()
    try:
        with (
            procs.node_exporter(tmp_path / "node") as node,
            procs.prometheus(tmp_path / "receiver") as rx,
        ):
            addrs = {n: t.address for n, t in targets.items()}
            addrs["node_exporter"] = node.url.removeprefix("http://")
            cfg = tmp_path / "agent.alloy"
            cfg.write_text(alloy_config(rx.url, addrs))
            shoal = procs.agent(tmp_path, cfg, "--config.watch-interval=0")
            try:
                with procs.prometheus_agent(tmp_path / "peer", prometheus_config(rx.url, addrs)):
                    procs.wait_http(shoal.url + "/-/ready", proc=shoal.popen)
                    compare(rx.url, targets, addrs)
            finally:
                shoal.stop()
    finally:
        for t in targets.values():
            t.stop()


def compare(rx: str, targets: dict[str, Target], addrs: dict[str, str]) -> None:
    scraped = set(addrs) - {"skipped"}

    # A few scrapes of every target by both agents.
    def settled() -> bool:
        for agent in ("shoal", "prometheus"):
            res = procs.query(rx, f'count_over_time(up{{agent="{agent}",job="diff"}}[1m]) >= 4')
            got = {r["metric"]["payload"] for r in res}
            assert got == scraped, (agent, scraped - got)
        return True

    procs.eventually(settled, timeout=60)

    def same_series() -> tuple[dict, dict]:
        a, b = series(rx, "shoal"), series(rx, "prometheus")
        assert a.keys() == b.keys(), diff_report(a, b)
        return a, b

    shoal, prom = procs.eventually(same_series, timeout=20)
    per_a, per_b = by_payload(shoal), by_payload(prom)
    assert set(per_a) == scraped  # the skipped target was dropped by both
    assert not targets["skipped"].requests

    # The rules did what they say, identically (the sets are equal, so checking one side suffices).
    node_fixture = per_a["node_fixture"]
    some = next(iter(node_fixture))
    assert dict(some)["env"] == "prod" and "team" not in dict(some)
    assert dict(some)["port"] == addrs["node_fixture"].rsplit(":", 1)[1]
    assert dict(some)["shard"].startswith("node_fixture-")
    assert any("exported_port" in dict(k) for k in node_fixture)  # the exposed port label clashed
    assert any(dict(k).get("dev", "").startswith("network:") for k in node_fixture)
    assert any("http_code" in dict(k) for k in per_a["alltypes"])
    assert not any(dict(k).get("quantile") in ("0.9", "0.25") for k in shoal)
    assert not any(name(k) == "node_scrape_collector_duration_seconds" for k in shoal)
    assert not any("goversion" in dict(k) or "__tmp_mod" in dict(k) for k in shoal)
    assert any(name(k).startswith("kube_") for k in per_a["kube"])
    served = {x.split("{")[0] for x in PAYLOADS["kube"][0].read_text().splitlines() if x[:1] != "#"}
    by_hashmod = served - {name(k) for k in per_a["kube"]}
    assert by_hashmod and all(n.startswith(("kube_", "container_")) for n in by_hashmod), by_hashmod

    # Values: everything for the static payloads, the stable series of the live node exporter.
    for payload in scraped:
        a, b = per_a[payload], per_b[payload]
        names = Counter(name(k) for k in a)
        for r in REPORT:
            assert names[r] == 1, (payload, r)
        for k, va in a.items():
            n = name(k)
            if n in ("scrape_duration_seconds", "scrape_samples_post_metric_relabeling"):
                continue
            if payload == "node_exporter" and n not in NODE_STABLE:
                continue
            assert same_value(va, b[k]), (payload, dict(k), va, b[k])
        report_a = {name(k): float(v) for k, v in a.items() if name(k) in REPORT}
        report_b = {name(k): float(v) for k, v in b.items() if name(k) in REPORT}
        assert report_a["up"] == report_b["up"] == 1.0, payload
        assert report_a["scrape_samples_scraped"] == report_b["scrape_samples_scraped"] > 0
        # Alloy semantics: the scrape reports what it scraped; relabeling happens downstream.
        assert (
            report_a["scrape_samples_post_metric_relabeling"] == report_a["scrape_samples_scraped"]
        )
        # Prometheus counts what its metric_relabel_configs kept: the series it wrote, and repeats.
        repeats = 3 if payload == "duplicates" else 0
        assert report_b["scrape_samples_post_metric_relabeling"] == len(b) - len(REPORT) + repeats
        if payload != "node_exporter":
            assert report_a["scrape_series_added"] == report_b["scrape_series_added"] == 0.0

    # Files served verbatim: the scraped count is the number of sample lines.
    for payload, (path, _, _) in PAYLOADS.items():
        # Split on "\n" only: a label value in the node fixture holds a character splitlines() breaks on.
        lines = [x for x in path.read_text().split("\n") if x.strip() and not x.startswith("#")]
        got = float(
            procs.query(rx, f'scrape_samples_scraped{{agent="shoal",payload="{payload}"}}')[0][
                "value"
            ][1]
        )
        assert got == len(lines), payload

    # Both asked the targets with the same scrape timeout.
    for payload in PAYLOADS:
        seen = {
            r.headers.get("user-agent", "").split("/")[0]: r.headers.get(
                "x-prometheus-scrape-timeout-seconds"
            )
            for r in targets[payload].requests
        }
        assert seen == {"Shoal": "0.9", "Prometheus": "0.9"}, (payload, seen)
