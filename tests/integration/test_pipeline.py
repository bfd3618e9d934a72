"""Issue 3's "done when": real Prometheus, real node exporter, `shoal run` scraping both plus itself.

One agent process lives through the whole story (scrape, reload by HTTP and
by SIGHUP, a refused broken config, redaction, SIGTERM), because that is what
the story is about: the same WAL and the same components across all of it.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx
import pytest

from tests import procs

pytestmark = pytest.mark.integration

BASE = """
prometheus.exporter.self "agent" { }

prometheus.scrape "agent" {
  targets         = prometheus.exporter.self.agent.targets
  forward_to      = [prometheus.remote_write.prom.receiver]
  scrape_interval = "1s"
}

prometheus.scrape "node" {
  targets         = [{"__address__" = "NODE"}]
  job_name        = "node"
  forward_to      = [prometheus.remote_write.prom.receiver]
  scrape_interval = "1s"
  bearer_token    = "node-bearer-token-xyz"
}

prometheus.remote_write "prom" {
  external_labels = {"cluster" = "it", "agent" = "shoal"}
  endpoint {
    url = "PROM/api/v1/write"
    basic_auth {
      username = "writer"
      password = "hunter2-password"
    }
    queue_config {
      batch_send_deadline = "200ms"
    }
  }
}
"""

EXTRA = """
prometheus.scrape "JOB" {
  targets         = [{"__address__" = "NODE", "extra" = "yes"}]
  job_name        = "JOB"
  forward_to      = [prometheus.remote_write.prom.receiver]
  scrape_interval = "1s"
}
"""


def exporter_values(node_url: str) -> dict[str, str]:
    """The exposition lines of the node exporter, as ``series -> value`` text."""
    out = {}
    for line in httpx.get(node_url + "/metrics", timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            out[series] = value
    return out


def one(prom_url: str, expr: str) -> dict:
    res = procs.query(prom_url, expr)
    assert len(res) == 1, (expr, res)
    return res[0]


def latest_ts(prom_url: str, expr: str) -> float:
    return float(one(prom_url, f"timestamp({expr})")["value"][1])


def plain(v: dict):  # noqa: ANN201
    """An Alloy API value back into Python."""
    if v["type"] == "object":
        return {kv["key"]: plain(kv["value"]) for kv in v["value"]}
    if v["type"] == "array":
        return [plain(x) for x in v["value"]]
    return v.get("value")


def rw_status(agent_url: str) -> dict:
    info = httpx.get(f"{agent_url}/api/v0/web/components/prometheus.remote_write.prom", timeout=10).json()
    return {d["name"]: plain(d["value"]) for d in info["debugInfo"]}


def wal_segments(wal: Path) -> list[str]:
    return sorted(p.name for p in wal.iterdir() if p.name.isdigit())


def test_scrape_remote_write_reload_redact_and_stop(tmp_path):
    with procs.prometheus(tmp_path / "prom") as prom, procs.node_exporter(tmp_path / "node") as node:
        node_addr = node.url.removeprefix("http://")
        cfg = tmp_path / "agent.alloy"
        base = BASE.replace("NODE", node_addr).replace("PROM", prom.url)
        cfg.write_text(base)
        agent = procs.agent(tmp_path, cfg, "--config.watch-interval=0")
        try:
            procs.wait_http(agent.url + "/-/ready", proc=agent.popen)

            # up is 1 for every job, with the external labels.
            def ups() -> dict[str, dict]:
                jobs = {r["metric"]["job"]: r for r in procs.query(prom.url, 'up{cluster="it"}')}
                assert set(jobs) == {"node", "integrations/self"}, jobs
                for job, r in jobs.items():
                    assert r["value"][1] == "1", (job, r)
                return jobs

            jobs = procs.eventually(ups, timeout=60)
            for r in jobs.values():
                assert r["metric"]["agent"] == "shoal"
            assert jobs["node"]["metric"]["instance"] == node_addr
            assert jobs["integrations/self"]["metric"]["instance"]  # the host name

            # Node exporter series arrive with job, instance and external labels, and the values served.
            build = procs.eventually(
                lambda: procs.query(prom.url, 'node_exporter_build_info{job="node"}'), timeout=30
            )[0]
            assert build["metric"]["instance"] == node_addr
            assert build["metric"]["cluster"] == "it" and build["metric"]["agent"] == "shoal"
            served = exporter_values(node.url)
            (served_build,) = [k for k in served if k.startswith("node_exporter_build_info{")]
            for name, value in re.findall(r'(\w+)="([^"]*)"', served_build):
                assert build["metric"][name] == value, name
            assert build["value"][1] == served[served_build] == "1"
            mem = one(prom.url, 'node_memory_MemTotal_bytes{job="node"}')
            assert float(mem["value"][1]) == float(served["node_memory_MemTotal_bytes"])
            # The agent's own metrics come through too.
            procs.eventually(lambda: procs.query(prom.url, 'alloy_build_info{job="integrations/self"}'))

            # The agent's own metrics, under Alloy's names.
            metrics = httpx.get(agent.url + "/metrics", timeout=10).text
            assert 'alloy_component_controller_running_components{health_type="healthy"} 4.0' in metrics
            assert "alloy_component_evaluation_seconds_count" in metrics
            assert "alloy_config_last_load_successful 1.0" in metrics

            # The API redacts the secrets; so do the logs.
            for cid in ("prometheus.remote_write.prom", "prometheus.scrape.node"):
                r = httpx.get(f"{agent.url}/api/v0/web/components/{cid}", timeout=10)
                assert r.status_code == 200
                assert "hunter2-password" not in r.text and "node-bearer-token-xyz" not in r.text
                assert '"(secret)"' in r.text
            status = rw_status(agent.url)
            wal_dir = tmp_path / "data" / "prometheus.remote_write.prom" / "wal"
            assert status["wal"]["directory"] == str(wal_dir)
            series_before = status["wal"]["series"]
            sent_before = status["endpoints"][0]["samples_sent"]
            assert series_before > 0 and sent_before > 0
            segments_before = wal_segments(wal_dir)
            assert segments_before

            # Reload over HTTP with a new target: it gets scraped, the WAL is the same.
            node_samples_before = float(
                one(prom.url, 'count_over_time(up{job="node"}[1h])')["value"][1]
            )
            cfg.write_text(base + EXTRA.replace("JOB", "node_extra").replace("NODE", node_addr))
            r = httpx.post(agent.url + "/-/reload", timeout=30)
            assert (r.status_code, r.text) == (200, "config reloaded\n")
            extra = procs.eventually(lambda: procs.query(prom.url, 'up{job="node_extra"} == 1'), timeout=30)
            assert extra[0]["metric"]["extra"] == "yes" and extra[0]["metric"]["cluster"] == "it"
            assert set(segments_before) <= set(wal_segments(wal_dir))
            # The untouched job kept going across the reload.
            procs.eventually(
                lambda: float(one(prom.url, 'count_over_time(up{job="node"}[1h])')["value"][1])
                > node_samples_before,
                timeout=30,
            )

            # Reload by SIGHUP.
            cfg.write_text(
                base
                + EXTRA.replace("JOB", "node_extra").replace("NODE", node_addr)
                + EXTRA.replace("JOB", "node_hup").replace("NODE", node_addr)
            )
            agent.popen.send_signal(signal.SIGHUP)
            procs.eventually(lambda: procs.query(prom.url, 'up{job="node_hup"} == 1'), timeout=30)

            # A broken config is refused with a position, and the running one keeps going.
            good = cfg.read_text()
            cfg.write_text(good.replace('scrape_interval = "1s"', 'scrape_interval = "15x"', 1))
            r = httpx.post(agent.url + "/-/reload", timeout=30)
            assert r.status_code == 400
            assert re.search(rf"{re.escape(str(cfg))}:\d+:\d+: .*15x", r.text), r.text
            t0 = latest_ts(prom.url, 'up{job="node_hup"}')
            procs.eventually(lambda: latest_ts(prom.url, 'up{job="node_hup"}') > t0 + 1, timeout=30)
            assert one(prom.url, 'up{job="node"}')["value"][1] == "1"

            # Nothing was dropped, and the sender is the same one since start (its counters never reset).
            status = rw_status(agent.url)
            (endpoint,) = status["endpoints"]
            assert endpoint["samples_dropped"] == {} and endpoint["samples_failed"] == 0
            assert endpoint["samples_sent"] > sent_before
            assert status["wal"]["directory"] == str(wal_dir)
            assert status["wal"]["series"] > series_before  # the series table was kept, and grew
            assert set(segments_before) <= set(wal_segments(wal_dir))

            # SIGTERM: a clean stop with exit code 0 (procs.stop kills after 10 s, which would not be 0).
            assert agent.stop(signal.SIGTERM, timeout=10) == 0
            log = agent.log_text()
            assert "hunter2-password" not in log and "node-bearer-token-xyz" not in log
            assert "stopped" in log
        finally:
            agent.stop()
