"""Converted configurations behave as the originals: Prometheus agent mode vs `shoal run`.

Realistic prometheus.yml files (static targets with labels, file_sd_configs
over JSON and YAML files, relabel_configs, metric_relabel_configs, a target
behind basic auth, scrape params, remote_write with a queue_config) are run
as they are by `prometheus --enable-feature=agent` and, after `shoal
convert`, by `shoal run`. The targets are real HTTP servers; both agents
remote-write into one real Prometheus, told apart only by the external
label ``agent`` (the one line in which the two YAML files differ). The
series sets and their labels must be identical, and so must every value
except the designed difference (``scrape_samples_post_metric_relabeling``,
counted before ``prometheus.relabel`` in Alloy) and ``scrape_duration_seconds``.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests import procs
from tests.targets import TEXT, Target

pytestmark = pytest.mark.integration

APP = """# HELP app_requests_total Requests.
# TYPE app_requests_total counter
app_requests_total{code="200",method="get"} 1027
app_requests_total{code="500",method="get"} 3
app_requests_total{code="200",method="post"} 12
# TYPE app_temperature_celsius gauge
app_temperature_celsius{sensor="a",debug="x"} 21.5
app_temperature_celsius{sensor="b",debug="y"} 19
# TYPE app_latency_seconds histogram
app_latency_seconds_bucket{le="0.1"} 5
app_latency_seconds_bucket{le="1"} 9
app_latency_seconds_bucket{le="+Inf"} 10
app_latency_seconds_sum 3.5
app_latency_seconds_count 10
go_goroutines 42
"""
DB = """# TYPE db_connections gauge
db_connections{pool="main"} 17
db_connections{pool="replica"} 4
# TYPE db_queries_total counter
db_queries_total{kind="select"} 90210
db_queries_total{kind="insert"} 1234
"""
SECRET_METRICS = """# TYPE vault_sealed gauge
vault_sealed 0
vault_token_count{namespace="root"} 8
"""
USER, PASSWORD = "scraper", "s3cr3t"

# Two configurations; TARGET_* and FILES are filled in, AGENT is prometheus or shoal.
CONFIGS = {
    "static_relabel_auth": """
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  external_labels:
    agent: AGENT
    region: eu-west

scrape_configs:
  - job_name: web-app
    static_configs:
      - targets: [TARGET_APP1, TARGET_APP2]
        labels:
          env: prod
          __meta_team: payments
      - targets: [TARGET_DB]
        labels:
          env: staging
          tier: db
    relabel_configs:
      - regex: __meta_(.+)
        action: labelmap
      - source_labels: [__address__]
        regex: ".*:([0-9]+)"
        target_label: port
      - source_labels: [env, tier]
        separator: "-"
        regex: "(.+)-(.+)"
        target_label: placement
        replacement: "${2}@$1"
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: go_.*
        action: drop
      - regex: debug
        action: labeldrop
      - source_labels: [__name__, code]
        regex: "app_requests_total;5.."
        target_label: failed
        replacement: "yes"

  - job_name: vault
    metrics_path: /v1/sys/metrics
    params:
      format: [prometheus]
    honor_labels: true
    basic_auth:
      username: USER
      password: PASSWORD
    static_configs:
      - targets: [TARGET_SECRET]

remote_write:
  - name: rx
    url: RECEIVER/api/v1/write
    queue_config:
      batch_send_deadline: 200ms
      max_shards: 4
""",
    "file_sd": """
global:
  scrape_interval: 1s
  scrape_timeout: 500ms
  external_labels:
    agent: AGENT

scrape_configs:
  - job_name: files
    file_sd_configs:
      - files: [FILES/*.json]
        refresh_interval: 10s
      - files: [FILES/*.yml]
    relabel_configs:
      - source_labels: [__meta_filepath]
        regex: ".*/([^/]+)\\\\.(json|yml)"
        target_label: sd_file
        replacement: "$1-$2"
      - source_labels: [role]
        regex: canary
        action: drop
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: "app_latency_seconds_bucket"
        action: drop

remote_write:
  - url: RECEIVER/api/v1/write
    queue_config:
      batch_send_deadline: 200ms
""",
}


class _AuthHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    paths: list[str]

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        want = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        ok = self.headers.get("Authorization") == want
        body = SECRET_METRICS.encode() if ok else b"unauthorized\n"
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", TEXT)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def auth_target() -> Iterator[ThreadingHTTPServer]:
    """A target that answers 401 unless the scraper sends the right basic auth."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AuthHandler)
    server.daemon_threads = True
    server.paths = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def convert(yml: Path, out: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "agent", "convert", "--source-format=prometheus", "-o", str(out),
         str(yml)],
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr.decode()


def series(rx: str, agent: str) -> dict[frozenset, str]:
    out = {}
    for r in procs.query(rx, f'{{agent="{agent}"}}'):
        m = dict(r["metric"])
        del m["agent"]
        out[frozenset(m.items())] = r["value"][1]
    return out


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_converted_config_scrapes_like_prometheus(tmp_path: Path, case: str) -> None:
    sd = tmp_path / "sd"
    sd.mkdir()
    with (
        Target(APP) as app1,
        Target(APP) as app2,
        Target(DB) as db,
        auth_target() as secret,
        procs.prometheus(tmp_path / "receiver") as rx,
    ):
        addr = {
            "TARGET_APP1": app1.address,
            "TARGET_APP2": app2.address,
            "TARGET_DB": db.address,
            "TARGET_SECRET": f"127.0.0.1:{secret.server_address[1]}",
        }
        (sd / "web.json").write_text(json.dumps([
            {"targets": [app1.address, app2.address], "labels": {"team": "web"}},
            {"targets": [db.address], "labels": {"team": "data", "role": "canary"}},
        ]))
        (sd / "db.yml").write_text(f"- targets: ['{db.address}']\n  labels:\n    team: data\n")

        text = CONFIGS[case]
        for k, v in addr.items():
            text = text.replace(k, v)
        text = text.replace("RECEIVER", rx.url).replace("FILES", str(sd))
        text = text.replace("USER", USER).replace("PASSWORD", PASSWORD)
        yml = tmp_path / "shoal-prometheus.yml"
        yml.write_text(text.replace("AGENT", "shoal"))
        converted = tmp_path / "converted.alloy"
        convert(yml, converted)

        shoal = procs.agent(tmp_path, converted, "--config.watch-interval=0")
        try:
            with procs.prometheus_agent(tmp_path / "peer", text.replace("AGENT", "prometheus")):
                procs.wait_http(shoal.url + "/-/ready", proc=shoal.popen)
                compare(rx.url, case)
                if case == "file_sd":
                    # A target file edited while both run: both pick the new target up.
                    (sd / "db.yml").write_text(
                        f"- targets: ['{db.address}']\n  labels:\n    team: data\n"
                        f"- targets: ['{app1.address}']\n  labels:\n    team: late\n"
                    )
                    compare(rx.url, case, targets=4, late=True)
        finally:
            shoal.stop()
        if case == "static_relabel_auth":
            paths = set(secret.paths)  # type: ignore[attr-defined]
            assert paths == {"/v1/sys/metrics?format=prometheus"}, paths


def compare(rx: str, case: str, targets: int = 0, late: bool = False) -> None:
    targets = targets or (4 if case == "static_relabel_auth" else 3)

    def settled() -> bool:
        for agent in ("shoal", "prometheus"):
            res = procs.query(rx, f'count_over_time(up{{agent="{agent}"}}[1m]) >= 3')
            assert len(res) == targets, (agent, res)
        return True

    procs.eventually(settled, timeout=60)

    def same() -> tuple[dict, dict]:
        a, b = series(rx, "shoal"), series(rx, "prometheus")
        only_a = [dict(k) for k in a.keys() - b.keys()][:5]
        only_b = [dict(k) for k in b.keys() - a.keys()][:5]
        assert a.keys() == b.keys(), f"only shoal: {only_a}\nonly prometheus: {only_b}"
        return a, b

    a, b = procs.eventually(same, timeout=20)
    for k, va in a.items():
        name = dict(k)["__name__"]
        if name in ("scrape_duration_seconds", "scrape_samples_post_metric_relabeling"):
            continue
        assert va == b[k], (dict(k), va, b[k])
    assert all(v == "1" for k, v in a.items() if dict(k)["__name__"] == "up")

    labels = [dict(k) for k in a]
    if case == "static_relabel_auth":
        assert all(x.get("region") == "eu-west" for x in labels)
        app = [x for x in labels if x["__name__"] == "app_requests_total"]
        assert len(app) == 6 and all(x["team"] == "payments" and x["env"] == "prod" for x in app)
        assert {x.get("failed") for x in app} == {"yes", None}
        assert not any("debug" in x or x["__name__"].startswith("go_") for x in labels)
        assert any(x.get("placement") == "db@staging" for x in labels)
        vault = [x for x in labels if x["__name__"] == "vault_token_count"]
        assert vault == [{**vault[0], "namespace": "root", "job": "vault"}]
    else:
        files = {x.get("sd_file") for x in labels}
        assert files == {"web-json", "db-yml"}
        assert any(x.get("team") == "late" for x in labels) == late
        assert not any(x["__name__"] == "app_latency_seconds_bucket" for x in labels)
        assert not any(x.get("role") == "canary" for x in labels)
