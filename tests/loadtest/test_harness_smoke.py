"""The benchmark harness's own parts: payloads are valid, realistic exposition;
the nginx configs it writes really serve them and really answer writes; the
agent configs it writes are accepted by the agents' own checkers.
"""

from __future__ import annotations

import gzip
import json
import math
import random
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.syntax.parser import parse_file
from loadtest.harness import nginx, report
from loadtest.harness.agents import Job, PrometheusAgent, Shoal, VMAgent, duration, shoal_config
from loadtest.harness.proc import stop_all, wait_http
from loadtest.harness.responsiveness import (
    Prober,
    bucket_delta,
    highest_bucket,
    histogram_buckets,
    histogram_quantile,
    loop_lag,
    sample_quantile,
)
from loadtest.harness.result import RunResult
from loadtest.harness.run import FINE_K, LADDER_K, free_port, next_rung
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


# -- responsiveness: loop-lag quantiles and the probe ---------------------------------------

LAG_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, math.inf)


def test_histogram_quantile_interpolates_within_buckets_like_prometheus():
    b = [(0.001, 3.0), (0.01, 7.0), (0.1, 9.0), (math.inf, 10.0)]
    # rank 5 lies in (0.001, 0.01], 2 of its 4 observations in: halfway.
    assert histogram_quantile(0.5, b) == pytest.approx(0.001 + 0.009 * 0.5)
    # rank 2 lies in the first bucket, which starts at 0.
    assert histogram_quantile(0.2, b) == pytest.approx(0.001 * 2 / 3)
    # rank 9.9 lies in the +Inf bucket: the highest finite bound answers.
    assert histogram_quantile(0.99, b) == 0.1
    assert histogram_quantile(0.9, b) == pytest.approx(0.1)  # rank 9: the top of (0.01, 0.1]
    assert histogram_quantile(-0.1, b) == -math.inf and histogram_quantile(1.5, b) == math.inf
    assert math.isnan(histogram_quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]))  # nothing observed
    assert math.isnan(histogram_quantile(0.5, [(0.1, 3.0), (1.0, 5.0)]))  # no +Inf bucket
    assert math.isnan(histogram_quantile(0.5, [(math.inf, 5.0)]))  # one bucket
    # Counts that went down (buckets read at different instants) are made monotonic.
    assert histogram_quantile(0.5, [(0.1, 4.0), (1.0, 3.0), (math.inf, 4.0)]) == pytest.approx(0.05)
    assert highest_bucket(b) == math.inf
    assert highest_bucket([(0.001, 3.0), (0.01, 7.0), (0.1, 7.0), (math.inf, 7.0)]) == 0.01
    assert highest_bucket([(0.1, 0.0), (math.inf, 0.0)]) is None


def _random_buckets(rng: random.Random) -> list[tuple[float, float]]:
    counts, total = [], 0
    for _ in LAG_BOUNDS:
        total += rng.choice((0, 0, 1, 2, 5, 40, 1000))
        counts.append(total)
    if total == 0:
        counts[-1] = 1
    if rng.random() < 0.2:  # a dip, as buckets read at slightly different instants show
        i = rng.randrange(1, len(counts) - 1)
        counts[i] = max(counts[i - 1] - 1, 0)
    return list(zip(LAG_BOUNDS, map(float, counts), strict=True))


def test_histogram_quantile_matches_prometheus_own_engine(tmp_path):
    """promtool evaluates histogram_quantile over the same buckets and must get our value."""
    rng = random.Random(6)
    tests = []
    nan_cases = 0
    for case in range(25):
        b = _random_buckets(rng)
        name = f"h{case}_bucket"
        series = [
            {
                "series": f'{name}{{le="{"+Inf" if math.isinf(le) else repr(le)}"}}',
                "values": f"0 {c:g}",
            }
            for le, c in b
        ]
        exprs = []
        for q in (0, 0.25, 0.5, 0.9, 0.99, 1):
            ours, theirs = histogram_quantile(q, b), f"histogram_quantile({q}, {name})"
            if math.isnan(ours):  # promtool finds NaN unequal to NaN: ask "is it NaN?" instead
                theirs, ours = f"{theirs} != bool {theirs}", 1.0
            exprs.append(
                {
                    "expr": theirs,
                    "eval_time": "1m",
                    "exp_samples": [{"labels": "{}", "value": ours}],
                }
            )
        nan_cases += sum("!= bool" in e["expr"] for e in exprs)
        tests.append({"interval": "1m", "input_series": series, "promql_expr_test": exprs})
    assert 0 < nan_cases < 25 * 6  # both kinds of answer were compared
    path = tmp_path / "quantile_test.yml"
    path.write_text(json.dumps({"rule_files": [], "evaluation_interval": "1m", "tests": tests}))
    out = subprocess.run(
        ["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def test_loop_lag_over_a_window_from_two_metrics_reads():
    registry = CollectorRegistry()
    lag = Histogram(
        "shoal_event_loop_lag_seconds", "lag", buckets=LAG_BOUNDS[:-1], registry=registry
    )
    other = Histogram("shoal_event_loop_lag_seconds_other", "decoy", registry=registry)
    for v in (0.0005,) * 50 + (0.3,) * 5:  # before the window: must not count
        lag.observe(v)
    before = generate_latest(registry).decode()
    for v in (0.0002,) * 90 + (0.004,) * 8 + (0.02, 0.7):
        lag.observe(v)
    other.observe(100)
    after = generate_latest(registry).decode()
    assert histogram_buckets(after, "shoal_event_loop_lag_seconds")[-1] == (math.inf, 155.0)
    w = loop_lag(before, after, ("go_sched_latencies_seconds", "shoal_event_loop_lag_seconds"))
    assert w is not None and w.metric == "shoal_event_loop_lag_seconds"
    assert w.observations == 100
    # rank 99 is the 99th of 100 observations: the one in (0.01, 0.025].
    assert w.p99 == pytest.approx(0.025)
    assert w.max_bucket == 1.0  # the 0.7 s stall
    assert histogram_quantile(
        0.5,
        bucket_delta(
            histogram_buckets(before, "shoal_event_loop_lag_seconds"),
            histogram_buckets(after, "shoal_event_loop_lag_seconds"),
        ),
    ) == pytest.approx(0.001 * 50 / 90)
    assert loop_lag(before, after, ("go_sched_latencies_seconds",)) is None


def test_sample_quantile_and_the_probe_against_a_real_server():
    assert sample_quantile(0.5, [3.0, 1.0, 2.0]) == 2.0
    assert sample_quantile(0.99, [0.0, 1.0]) == pytest.approx(0.99)
    assert math.isnan(sample_quantile(0.99, []))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            code = 200 if self.path == "/-/healthy" else 500
            self.send_response(code)
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"ok\n")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        good = Prober(base + "/-/healthy", period=0.05)
        good.start()
        deadline = time.monotonic() + 10
        while len(good.latencies) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        stats = good.stop()
        assert stats.path == "/-/healthy" and stats.n >= 3 and stats.failed == 0
        assert 0 < stats.p99 <= stats.max
        bad = Prober(base + "/broken", period=0.05)
        bad.probe()
        assert bad.latencies == [] and bad.failures == ["HTTP 500"]
    finally:
        server.shutdown()
        server.server_close()
    closed = Prober(f"http://127.0.0.1:{free_port()}/-/healthy", timeout=2)
    closed.probe()
    stats = closed.stop()
    assert stats.n == 0 and stats.failed == 1 and math.isnan(stats.p99)
    assert "ConnectionRefused" in closed.failures[0]


def test_the_max_ladder_brackets_with_coarse_rungs_then_bisects_the_fine_ones():
    """An agent that keeps up to 260k/s, climbing from a heavy run that kept up at 200k."""
    rungs = sorted(set(LADDER_K) | set(FINE_K))
    tried: list[int] = []
    passed = failed = None
    while (k := next_rung(rungs, LADDER_K, 300, passed, failed)) is not None:
        tried.append(k)
        if k <= 260:
            passed = k
        else:
            failed = k
    assert tried == [300, 200, 250, 275]  # 300 fails, 200 passes, 250 passes, 275 fails
    assert (passed, failed) == (250, 275)
    # Climbing past 300 bisects the 25k rungs between 300 and 450; descending below 200 does too.
    assert next_rung(rungs, LADDER_K, 300, 300, 450) == 375
    assert next_rung(rungs, LADDER_K, 300, 375, 450) == 425
    assert next_rung(rungs, LADDER_K, 300, 400, 450) == 425
    assert next_rung(rungs, LADDER_K, 300, 425, 450) is None
    assert next_rung(rungs, LADDER_K, 300, 450, 650) == 550
    assert next_rung(rungs, LADDER_K, 150, None, 200) == 150
    assert next_rung(rungs, LADDER_K, 150, 150, 200) == 175
    assert next_rung(rungs, LADDER_K, 150, 175, 200) is None


def test_the_max_table_says_how_the_first_load_not_kept_up_was_handled():
    """Scraped and sent shares, skipped ticks by reason and the backlog's growth at that load."""
    kw = dict(interval_s=1.0, series_per_target=1000, wall_s=10.0, cpu_s=9.9)
    kept = RunResult("max", "shoal", targets=400, scrapes=4000, agent_sent=4_000_000.0, **kw)
    shed = RunResult("max", "shoal", targets=450, scrapes=3825, agent_sent=3_800_000.0,
                     skipped={"backpressure": 675.0}, **kw)
    collapsed = RunResult("max", "other", targets=450, scrapes=4500, agent_sent=2_740_000.0, **kw)
    assert not shed.keeps_up and shed.backlog_growth == pytest.approx(2_500)
    assert collapsed.backlog_growth == pytest.approx(176_000)
    assert shed.sent_share == pytest.approx(380 / 450)
    rows = report.max_table([kept, shed, collapsed]).splitlines()
    assert rows[2].split(" | ")[1:7] == ["400.0", "450.0", "382.5k/s (85%)", "380.0 (84%)",
                                        "675 backpressure", "2.5"]
    assert rows[3].split(" | ")[1:7] == ["none tried passed", "450.0", "450.0k/s (100%)",
                                        "274.0 (61%)", "-", "176.0"]
