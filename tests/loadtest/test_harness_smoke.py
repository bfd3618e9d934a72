"""The benchmark harness's own parts: payloads are valid, realistic exposition;
the nginx configs it writes really serve them and really answer writes; the
agent configs it writes are accepted by the agents' own checkers.
"""

from __future__ import annotations

import gzip
import subprocess
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.syntax.parser import parse_file
from loadtest.harness import nginx
from loadtest.harness.agents import Job, PrometheusAgent, Shoal, VMAgent, duration, shoal_config
from loadtest.harness.proc import stop_all, wait_http
from loadtest.harness.result import RunResult
from loadtest.harness.run import free_port
from loadtest.harness.targets import BUCKETS, count_samples, render_payload, write_payloads


def _samples(text: str) -> list:
    return [s for fam in text_string_to_metric_families(text) for s in fam.samples]


@pytest.mark.parametrize("series", [1000, 37, 250])
def test_payload_is_valid_exposition_with_exact_series(series):
    text = render_payload(series, family=3, variant=0)
    samples = _samples(text)
    assert len(samples) == series == count_samples(text)
    assert len({(s.name, tuple(sorted(s.labels.items()))) for s in samples}) == series
    for s in samples:
        assert 4 <= len(s.labels) <= 8, s


def test_payload_mixes_counters_gauges_and_ten_bucket_histograms():
    fams = {f.name: f for f in text_string_to_metric_families(render_payload(1000, 0, 0))}
    types = {f.type for f in fams.values()}
    assert {"counter", "gauge", "histogram"} <= types
    hist = fams["http_server_request_duration_seconds"]
    one = [
        s for s in hist.samples if s.labels.get("route") == "/" and s.labels.get("method") == "GET"
    ]
    buckets = [s for s in one if s.name.endswith("_bucket")]
    assert [s.labels["le"] for s in buckets] == list(BUCKETS)
    assert [s.value for s in buckets] == sorted(s.value for s in buckets)  # cumulative
    count = next(s for s in one if s.name.endswith("_count"))
    assert count.value == buckets[-1].value


def test_values_change_between_variants_and_counters_only_grow():
    a = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for s in _samples(render_payload(1000, 1, 0))
    }
    b = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for s in _samples(render_payload(1000, 1, 1))
    }
    assert a.keys() == b.keys()
    changed = sum(1 for k in a if a[k] != b[k])
    assert changed > 0.9 * len(a)
    for k, v in a.items():
        if k[0].endswith("_total"):
            assert b[k] > v, k


def test_targets_and_sink_nginx_serve_payloads_and_accept_writes(tmp_path):
    tmp_path.chmod(0o755)
    payloads = write_payloads(tmp_path / "payloads", series=120, families=2, variants=10)
    addrs = nginx.target_addresses(3)
    assert addrs == ["127.1.0.1", "127.1.0.2", "127.1.0.3"]
    port, status_port, sink_port = free_port(addrs[0]), free_port(), free_port()
    try:
        targets = nginx.start(
            tmp_path / "targets",
            nginx.targets_conf(tmp_path / "targets", payloads, addrs, port, 1.0, status_port),
            "nginx-targets",
            cpu=None,
        )
        sink = nginx.start(
            tmp_path / "sink", nginx.sink_conf(tmp_path / "sink", sink_port), "nginx-sink", cpu=None
        )
        wait_http(f"http://127.0.0.1:{status_port}/status", targets)
        wait_http(f"http://127.0.0.1:{sink_port}/status", sink)
        before = nginx.stub_status(f"http://127.0.0.1:{status_port}/status").requests
        for a in addrs:
            r = httpx.get(f"http://{a}:{port}/metrics", headers={"Accept-Encoding": "identity"})
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
            assert count_samples(r.text) == 120
        raw = httpx.get(f"http://{addrs[0]}:{port}/metrics", headers={"Accept-Encoding": "gzip"})
        assert raw.headers.get("content-encoding") == "gzip"
        assert count_samples(raw.text) == 120  # httpx decoded the pre-compressed file
        # Targets 0 and 2 share family 0, target 1 serves family 1.
        t0 = httpx.get(f"http://{addrs[0]}:{port}/metrics").text
        t1 = httpx.get(f"http://{addrs[1]}:{port}/metrics").text
        assert 'service="svc-0"' in t0 and 'service="svc-1"' in t1
        # The variant follows the clock: within a couple of seconds the values move.
        seen = {t0}
        deadline = time.monotonic() + 5
        while len(seen) < 2 and time.monotonic() < deadline:
            seen.add(httpx.get(f"http://{addrs[0]}:{port}/metrics").text)
            time.sleep(0.2)
        assert len(seen) >= 2
        after = nginx.stub_status(f"http://127.0.0.1:{status_port}/status").requests
        assert after - before >= len(addrs) + 3
        w = httpx.post(
            f"http://127.0.0.1:{sink_port}/api/v1/write",
            content=gzip.compress(b"x" * 300_000),
            headers={"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"},
        )
        assert w.status_code == 204
    finally:
        stop_all()


def test_agent_configs_pass_the_agents_own_checks(tmp_path):
    job = Job(
        targets=["127.1.0.1:9100", "127.1.0.2:9100"],
        interval_s=1.0,
        sink_url="http://127.0.0.1:1/api/v1/write",
    )
    vm_cfg = VMAgent().write_config(tmp_path, job)
    out = subprocess.run(
        [
            "vmagent",
            f"-promscrape.config={vm_cfg}",
            "-promscrape.config.dryRun",
            "-loggerLevel=ERROR",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    prom_cfg = PrometheusAgent().write_config(tmp_path, job)
    out = subprocess.run(
        ["promtool", "check", "config", "--agent", str(prom_cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    alloy = Shoal().write_config(tmp_path, job).read_text()
    assert alloy == shoal_config(job)
    tree = parse_file(alloy, "shoal.alloy")
    assert len(tree.body) == 2
    assert 'scrape_interval = "1s"' in alloy and '"__address__" = "127.1.0.2:9100"' in alloy


def test_durations_and_derived_figures():
    assert duration(10) == "10s" and duration(1.0) == "1s" and duration(0.5) == "500ms"
    r = RunResult(
        "heavy",
        "x",
        targets=200,
        interval_s=1.0,
        series_per_target=1000,
        wall_s=10.0,
        cpu_s=4.0,
        scrapes=2000,
        agent_sent=1_990_000.0,
        rss_steady=200_000_000,
    )
    assert r.scraped_rate == 200_000
    assert r.cpu_per_million == pytest.approx(2.0)
    assert r.bytes_per_series == pytest.approx(1000)
    assert r.keeps_up
    slow = RunResult(
        "heavy",
        "x",
        targets=200,
        interval_s=1.0,
        series_per_target=1000,
        wall_s=10.0,
        cpu_s=10.0,
        scrapes=1500,
        agent_sent=1_500_000.0,
    )
    assert not slow.keeps_up
