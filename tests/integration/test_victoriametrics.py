"""`shoal run` remote-writing into a real VictoriaMetrics (Debian's), checked sample by sample.

Issue 5 asks for Remote-Write 1.0 against VictoriaMetrics and for 2.0 wherever
a receiver can take it. One agent process scrapes a target whose payload the
test changes four times per scrape interval (tests/targets.py logs which
payload version every scrape got) and a real node exporter, and writes through
a pass-through fault proxy (no faults; it only records what VictoriaMetrics
answered) into VictoriaMetrics. Raw samples come back from /api/v1/export, so
each one can be paired with the scrape that produced it:

- every scrape of the counter is there, once, with the value of the payload
  version that scrape was served (no loss, no duplicate, no stale value);
- per series, timestamps strictly increase;
- labels (escaped quotes and backslashes included), job, instance and the
  external labels arrive as written;
- node exporter series carry the same scrape timestamps as its ``up``.

Then the endpoint is switched by reload to Remote-Write 2.0. VictoriaMetrics
1.79 does not speak it; whatever it answers (415, or 2xx without the
X-Prometheus-Remote-Write-Samples-Written header), the agent must fall back to
1.0 and the data must keep arriving with nothing lost. The test prints which
path happened.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.remote.codec_v2 import V1
from tests import procs
from tests.faultproxy import FaultProxy
from tests.targets import Target

pytestmark = pytest.mark.integration

WRITE_PATH = "/api/v1/write"
INTERVAL = 0.5  # the controlled target's scrape interval, seconds
CHANGE = INTERVAL / 4  # payload swapped this often, so consecutive scrapes see different versions
PHASE = 7.0  # seconds of scraping per protocol

CONFIG = """
prometheus.scrape "ctl" {{
  targets         = [{{"__address__" = "{target}", "team" = "shoal"}}]
  job_name        = "ctl"
  forward_to      = [prometheus.remote_write.vm.receiver]
  scrape_interval = "500ms"
  scrape_timeout  = "400ms"
}}

prometheus.scrape "node" {{
  targets         = [{{"__address__" = "{node}"}}]
  job_name        = "node"
  forward_to      = [prometheus.remote_write.vm.receiver]
  scrape_interval = "1s"
}}

prometheus.remote_write "vm" {{
  external_labels = {{"cluster" = "it-vm", "replica" = "a"}}
  endpoint {{
    url = "{url}"
    {proto}
    queue_config {{
      batch_send_deadline = "100ms"
      min_backoff         = "30ms"
      max_backoff         = "500ms"
    }}
  }}
}}
"""
RW2 = 'protobuf_message = "io.prometheus.write.v2.Request"'

# A label value with a quote, a backslash and non-ASCII: escaping must survive the whole path.
ODD_VALUE = 'say "hi" \\ to C:\\temp, Zürich'
ODD_ESCAPED = ODD_VALUE.replace("\\", "\\\\").replace('"', '\\"')


def counter_value(version: int) -> float:
    return float(version * 3)


def gauge_value(version: int) -> float:
    return -1.5 + version * 0.25 if version % 2 else 1e12 + version


def payload(version: int) -> str:
    return (
        "# TYPE shoal_it_requests_total counter\n"
        f'shoal_it_requests_total{{code="200",odd="{ODD_ESCAPED}"}} {counter_value(version)!r}\n'
        "# TYPE shoal_it_level gauge\n"
        f"shoal_it_level {gauge_value(version)!r}\n"
    )


class Changer:
    """Swaps the target's payload every CHANGE seconds; payload ``v`` is served as version ``v``."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.wait(CHANGE):
            with self.target.lock:  # set() bumps the version; write the payload that matches it
                v = self.target.version + 1
            assert self.target.set(payload(v)) == v

    def __enter__(self) -> Changer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


def export(vm_url: str, match: str) -> list[dict]:
    """Raw samples of every series matching ``match``: [{"metric", "values", "timestamps"}]."""
    httpx.get(vm_url + "/internal/force_flush", timeout=10)  # make just-ingested rows searchable
    r = httpx.post(vm_url + "/api/v1/export", data={"match[]": match, "start": "0"}, timeout=30)
    r.raise_for_status()
    return [json.loads(line) for line in r.text.splitlines() if line.strip()]


def only(series: list[dict], **labels: str) -> dict:
    hits = [s for s in series if all(s["metric"].get(k) == v for k, v in labels.items())]
    assert len(hits) == 1, (labels, [s["metric"] for s in series])
    return hits[0]


def real_samples(s: dict) -> list[tuple[int, float]]:
    """(timestamp ms, value) without stale markers (VictoriaMetrics keeps them as NaN)."""
    out = []
    for ts, v in zip(s["timestamps"], s["values"], strict=True):
        fv = float(v) if v is not None else math.nan
        if not math.isnan(fv):
            out.append((ts, fv))
    return out


def rw_status(agent_url: str) -> dict:
    r = httpx.get(f"{agent_url}/api/v0/web/components/prometheus.remote_write.vm", timeout=10)
    r.raise_for_status()
    for d in r.json()["debugInfo"]:
        if d["name"] == "endpoints":
            (ep,) = _plain(d["value"])
            return ep
    raise AssertionError(r.text)


def _plain(v: dict):  # noqa: ANN202
    if v["type"] == "object":
        return {kv["key"]: _plain(kv["value"]) for kv in v["value"]}
    if v["type"] == "array":
        return [_plain(x) for x in v["value"]]
    return v.get("value")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[procs.Proc, procs.Proc, Target, FaultProxy]]:
    with (
        procs.victoria_metrics(tmp_path / "vm") as vm,
        procs.node_exporter(tmp_path / "node") as node,
        Target(payload(1)) as target,
        FaultProxy(vm.url) as proxy,
    ):
        yield vm, node, target, proxy


def test_samples_reach_victoriametrics_exactly_and_rw2_falls_back(tmp_path: Path, stack) -> None:  # noqa: ANN001
    vm, node, target, proxy = stack
    node_addr = node.url.removeprefix("http://")
    cfg = tmp_path / "agent.alloy"

    def write_config(proto: str) -> None:
        cfg.write_text(CONFIG.format(target=target.address, node=node_addr, url=proxy.url + WRITE_PATH,
                                     proto=proto))

    write_config("")
    agent = procs.agent(tmp_path, cfg, "--config.watch-interval=0")
    try:
        procs.wait_http(agent.url + "/-/ready", proc=agent.popen)
        with Changer(target):
            procs.eventually(lambda: export(vm.url, '{job="ctl",__name__="shoal_it_requests_total"}'))
            time.sleep(PHASE)
            assert rw_status(agent.url)["protocol"] == V1

            # Switch to Remote-Write 2.0 by reload; the WAL and everything scraped so far stay.
            t_switch, switch_wall = time.monotonic(), time.time()
            write_config(RW2)
            r = httpx.post(agent.url + "/-/reload", timeout=30)
            assert r.status_code == 200, r.text
            time.sleep(PHASE)
        # From here the target answers 503: those scrapes give up=0 and no value, and the
        # request log of the versions that were served with a value is complete.
        failing = target.set("down\n", status=503)
        served = _exposed(node.url)
        node.stop()  # likewise: its last answered scrape is the last up=1
        scrapes = [r for r in target.requests if r.version < failing]

        # ---- the controlled target: every scrape, its served value, in order, with its labels
        def all_arrived() -> list[dict]:
            series = export(vm.url, '{job="ctl"}')
            ctr = only(series, __name__="shoal_it_requests_total")
            assert len(real_samples(ctr)) >= len(scrapes), (len(real_samples(ctr)), len(scrapes))
            return series

        series = procs.eventually(all_arrived, timeout=30)
        ctr = only(series, __name__="shoal_it_requests_total")
        assert ctr["metric"] == {
            "__name__": "shoal_it_requests_total", "code": "200", "odd": ODD_VALUE, "job": "ctl",
            "instance": target.address, "team": "shoal", "cluster": "it-vm", "replica": "a",
        }
        got = real_samples(ctr)
        _strictly_increasing(ctr)
        assert len(got) == len(scrapes), (len(got), len(scrapes))  # one sample per scrape, no duplicate
        for (ts, value), req in zip(got, scrapes, strict=True):
            # The sample's timestamp is its scrape's start: the request arrived just after it.
            assert 0 <= req.time - ts / 1000 < INTERVAL / 2, (ts, req.time)
            assert value == counter_value(req.version), (ts, value, req.version)
        versions = [r.version for r in scrapes]
        assert len(set(versions)) == len(versions)  # the payload really changed between scrapes
        gauge = only(series, __name__="shoal_it_level")
        _strictly_increasing(gauge)
        assert [v for _, v in real_samples(gauge)] == [gauge_value(r.version) for r in scrapes]
        # Both protocols carried data: scrapes well after the switch are in VictoriaMetrics too.
        assert sum(1 for r in scrapes if r.time > switch_wall + 1) >= 4
        up = only(series, __name__="up")
        _strictly_increasing(up)
        ups = [v for _, v in real_samples(up)]
        assert ups[: len(scrapes)] == [1.0] * len(scrapes) and set(ups[len(scrapes):]) <= {0.0}

        # ---- the node exporter: labels, external labels, every series at every scrape of up
        def node_complete() -> list[dict]:
            out = export(vm.url, '{job="node",__name__=~"up|node_memory_MemTotal_bytes|'
                                 'node_exporter_build_info|node_cpu_seconds_total"}')
            up_ts = [ts for ts, v in real_samples(only(out, __name__="up")) if v == 1.0]
            for s in out:
                if s["metric"]["__name__"] != "up":
                    assert [ts for ts, _ in real_samples(s)] == up_ts, s["metric"]
            return out

        node_series = procs.eventually(node_complete, timeout=30)
        up_ts = [ts for ts, v in real_samples(only(node_series, __name__="up")) if v == 1.0]
        assert len(up_ts) >= PHASE  # scraped every second through both phases
        for s in node_series:
            assert s["metric"]["instance"] == node_addr and s["metric"]["job"] == "node"
            assert s["metric"]["cluster"] == "it-vm" and s["metric"]["replica"] == "a"
            _strictly_increasing(s)
        mem = only(node_series, __name__="node_memory_MemTotal_bytes")
        assert {v for _, v in real_samples(mem)} == {float(served["node_memory_MemTotal_bytes"])}
        build = only(node_series, __name__="node_exporter_build_info")
        (line,) = [k for k in served if k.startswith("node_exporter_build_info{")]
        assert all(f'{k}="{v}"' in line for k, v in build["metric"].items()
                   if k not in ("__name__", "job", "instance", "cluster", "replica"))
        cpu = [s for s in node_series if s["metric"]["__name__"] == "node_cpu_seconds_total"]
        assert cpu
        for s in cpu:
            values = [v for _, v in real_samples(s)]
            assert values == sorted(values), s["metric"]  # a counter never goes back

        # ---- what VictoriaMetrics answered the 2.0 requests, and what the agent did about it
        status = procs.eventually(lambda: _settled(agent.url), timeout=20)
        after = proxy.requests(since=t_switch, path=WRITE_PATH)
        v2 = [r for r in after if r.header("X-Prometheus-Remote-Write-Version") == "2.0.0"]
        v1_after = [r for r in after if r.header("X-Prometheus-Remote-Write-Version") == "0.1.0"
                    and v2 and r.t > v2[0].t]  # before it: the old queue, until the reload took effect
        answered = sorted({r.status for r in v2})
        if answered and all(s == 415 for s in answered):
            path = "415, the agent fell back to 1.0"
        elif answered and all(200 <= s < 300 for s in answered):
            path = "2xx without X-Prometheus-Remote-Write-Samples-Written, the agent fell back to 1.0"
        else:
            path = f"answered {answered}"
        print(f"\nRW 2.0 against VictoriaMetrics: {len(v2)} request(s) {path}; then {len(v1_after)} "
              f"1.0 requests; protocol now {status['protocol']!r}; logged: {status['last_error']!r}")
        assert v2, "the reloaded endpoint never sent a 2.0 request"
        assert all(r.header("Content-Type") == "application/x-protobuf;proto=io.prometheus.write.v2.Request"
                   for r in v2)
        # VictoriaMetrics 1.79 does not speak 2.0: one 2.0 request, then 1.0 for good.
        assert len(v2) == 1 and status["protocol"] == V1, (answered, status)
        assert v1_after
        assert "Remote-Write 1.0" in status["last_error"]
        assert status["samples_failed"] == 0 and status["samples_dropped"] == {}, status
    finally:
        agent.stop()


def _settled(agent_url: str) -> dict | None:
    """The endpoint status once nothing is pending (everything appended was answered)."""
    st = rw_status(agent_url)
    return st if st["pending_samples"] == 0 else None


def _strictly_increasing(s: dict) -> None:
    ts = s["timestamps"]
    assert all(a < b for a, b in zip(ts, ts[1:], strict=False)), s["metric"]


def _exposed(node_url: str) -> dict[str, str]:
    out = {}
    for line in httpx.get(node_url + "/metrics", timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            out[series] = value
    return out
