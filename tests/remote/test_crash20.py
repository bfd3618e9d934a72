"""Issue 5's crash test: `shoal run` scraping a real target, SIGKILLed 20 times at random moments.

The target counts the scrapes it serves and exposes SERIES counters whose
values are ``n * (i + 1)`` at its n-th scrape, so every sample's value is
known. After 20 kills (each at a random moment: during start-up, mid-scrape,
mid-send), the WAL holds everything the killed agents appended; one last
agent starts, and then every sample in the WAL must be in Prometheus with its
exact timestamp and value, every timestamp's values must belong to one scrape
of the target, and Prometheus must have rejected nothing as out of order or
as a duplicate with another value.
"""

from __future__ import annotations

import math
import random
import re
import signal
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from agent.wal import record
from agent.wal.checkpoint import read_checkpoint
from agent.wal.reader import read_all
from agent.wal.segment import list_segments, segment_path
from tests import procs
from tests.remote.test_prometheus import _write_errors

pytestmark = pytest.mark.integration

KILLS = 20
SERIES = 20

CONFIG = """
prometheus.scrape "crash" {
  targets         = [{"__address__" = "TARGET"}]
  job_name        = "crash"
  forward_to      = [prometheus.remote_write.prom.receiver]
  scrape_interval = "100ms"
}

prometheus.remote_write "prom" {
  endpoint {
    url = "PROM/api/v1/write"
    queue_config {
      batch_send_deadline = "100ms"
      min_backoff         = "10ms"
      max_backoff         = "200ms"
    }
  }
}
"""


class Counters(BaseHTTPRequestHandler):
    served = 0
    lock = threading.Lock()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        with Counters.lock:
            Counters.served += 1
            n = Counters.served
        body = "# TYPE crash_counter_total counter\n" + "".join(
            f'crash_counter_total{{k="{i}"}} {n * (i + 1)}\n' for i in range(SERIES)
        )
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: object) -> None:
        pass


def wal_samples(wal_dir: Path) -> dict[tuple, dict[int, float]]:
    """Every sample in the WAL (stale markers left out: Prometheus does not return them)."""
    _n, cp_series, _st = read_checkpoint(wal_dir)
    labels = dict(cp_series)
    out: dict[tuple, dict[int, float]] = defaultdict(dict)
    for s in list_segments(wal_dir):
        for rec in read_all(segment_path(wal_dir, s)).records:
            if rec.type == record.SERIES:
                labels.update(record.decode_series(rec.payload))
            elif rec.type == record.SAMPLES:
                refs, tss, vals = record.decode_samples(rec.payload)
                for r, t, v in zip(refs, tss, vals, strict=True):
                    if not math.isnan(v):
                        out[labels[r]][t] = v
    return out


def prom_samples(prom_url: str) -> dict[tuple, dict[int, float]]:
    r = httpx.get(prom_url + "/api/v1/query", params={"query": '{job="crash"}[2h]'}, timeout=30)
    r.raise_for_status()
    out: dict[tuple, dict[int, float]] = {}
    for s in r.json()["data"]["result"]:
        lb = tuple(sorted(s["metric"].items()))
        out[lb] = {round(float(t) * 1000): float(v) for t, v in s["values"]}
    return out


def test_twenty_sigkills_lose_nothing_and_prometheus_rejects_nothing(tmp_path: Path):
    rnd = random.Random(20)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Counters)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target = f"127.0.0.1:{server.server_address[1]}"
    wal_dir = tmp_path / "agent" / "data" / "prometheus.remote_write.prom" / "wal"
    try:
        with procs.prometheus(tmp_path / "prom") as prom:
            cfg = tmp_path / "crash.alloy"
            cfg.write_text(CONFIG.replace("TARGET", target).replace("PROM", prom.url))
            (tmp_path / "agent").mkdir()
            t_start = time.monotonic()
            for k in range(KILLS):
                agent = procs.agent(tmp_path / "agent", cfg)
                if k % 2:  # every other kill counts from /-/ready: on a busy host start-up alone takes
                    procs.wait_http(agent.url + "/-/ready", timeout=60, proc=agent.popen)  # 2.5 s or more
                time.sleep(rnd.uniform(0.3, 2.5))  # at random: starting, scraping, sending
                agent.stop(signal.SIGKILL)
            t_kills = time.monotonic() - t_start
            appended = wal_samples(wal_dir)
            n_appended = sum(len(v) for v in appended.values())
            agent = procs.agent(tmp_path / "agent", cfg)
            try:
                # Running before it is stopped: if the killed agents had delivered everything, a
                # SIGTERM at once could land before the handlers exist (a busy host: seconds of imports).
                procs.wait_http(agent.url + "/-/ready", timeout=60, proc=agent.popen)
                def delivered() -> bool:
                    got = prom_samples(prom.url)
                    missing = sum(1 for lb, ss in appended.items() for t in ss if t not in got.get(lb, {}))
                    assert missing == 0, f"{missing} of {n_appended} WAL samples not yet in Prometheus"
                    return True

                procs.eventually(delivered, timeout=40, interval=1.0)
            finally:
                assert agent.stop(signal.SIGTERM) == 0
            got = prom_samples(prom.url)
            errors = _write_errors(prom.url)
            log = prom.log_text()
    finally:
        server.shutdown()

    print(f"\n{KILLS} kills in {t_kills:.1f}s; {n_appended} samples in {len(appended)} series appended by the "
          f"killed agents, all in Prometheus; target served {Counters.served} scrapes; write errors {errors}")
    # Every sample the killed agents had appended is there, with its value.
    for lb, ss in appended.items():
        for t, v in ss.items():
            assert got[lb][t] == v, (lb, t)
    # The counters' values are known: at each timestamp, one scrape n gave n * (i + 1).
    counters = {dict(lb)["k"]: ss for lb, ss in got.items() if dict(lb)["__name__"] == "crash_counter_total"}
    assert len(counters) == SERIES
    scrapes = sorted(counters["0"].items())
    assert len(scrapes) > 20  # ~100-200 here, fewer when the machine is busy (slower starts)
    for t, n in scrapes:
        for i in range(SERIES):
            assert counters[str(i)][t] == n * (i + 1)
    ns = [n for _t, n in scrapes]
    assert ns == sorted(set(ns))  # strictly increasing in time: no reordering, no duplicate
    # Prometheus rejected nothing for order or duplicates. The only refused requests
    # are bodies cut off by a SIGKILL mid-send (Prometheus: "unexpected EOF").
    assert errors.get("out_of_order", 0) == 0, errors
    low = log.lower()
    assert "out of order" not in low and "duplicate sample" not in low
    refused = [ln for ln in log.splitlines() if "write_handler" in ln and "level=error" in ln]
    assert all(re.search("unexpected EOF", ln) for ln in refused), refused
    assert errors.get("http_400", 0) == len(refused) <= KILLS, errors
