"""The whole path for native histograms: a real exporter's protobuf payload, prometheus.scrape,
prometheus.remote_write (send_native_histograms), a real Prometheus 2.42 queried back."""

from __future__ import annotations

import asyncio
import math

import pytest

from tests import procs
from tests.components.helpers import controller, files, run
from tests.protobuf.metrics_pb import HISTOGRAM, MetricFamily, encode_delimited
from tests.scrape.server import PROTO_CONTENT_TYPE, Exporter

CONFIG = """
prometheus.scrape "app" {
  targets = [{"__address__" = "%s"}]
  job_name = "app"
  scrape_interval = "200ms"
  scrape_native_histograms = true
  scrape_protocols = ["PrometheusProto", "PrometheusText0.0.4"]
  forward_to = [prometheus.remote_write.out.receiver]
}

prometheus.remote_write "out" {
  endpoint {
    url = "%s/api/v1/write"
    send_native_histograms = %s
    queue_config {
      batch_send_deadline = "100ms"
    }
  }
}
"""


def _payload() -> bytes:
    """One native histogram: zero bucket 1, schema-2 buckets 0,1 and 4,5 holding 1, 2, 1, 3."""
    fam = MetricFamily(name="shoal_e2e_seconds", type=HISTOGRAM, help="Latency.")
    h = fam.metric.add().histogram
    h.schema = 2
    h.zero_threshold = 1e-4
    h.zero_count = 1
    for off, n in ((0, 2), (2, 2)):
        h.positive_span.add(offset=off, length=n)
    h.positive_delta.extend((1, 1, -1, 2))
    h.sample_count = 8
    h.sample_sum = 3.5
    return encode_delimited([fam])


async def _value(url: str, expr: str) -> float | None:
    res = await asyncio.to_thread(procs.query, url, expr)
    return float(res[0]["value"][1]) if res else None


@pytest.mark.integration
@pytest.mark.parametrize("send", [True, False])
def test_scraped_native_histogram_reaches_prometheus(tmp_path, send: bool):
    exp = Exporter().start()
    exp.set(body=_payload(), content_type=PROTO_CONTENT_TYPE)
    try:
        with procs.prometheus(tmp_path / "prom", ["--enable-feature=native-histograms"]) as prom:

            async def go():
                c = controller(tmp_path / "data")
                await c.load(files(CONFIG % (exp.address, prom.url, "true" if send else "false")))
                await c.settle()
                rw = c.node("prometheus.remote_write.out").exports.receiver
                got = None
                for _ in range(150):
                    await asyncio.sleep(0.1)
                    up = await _value(prom.url, 'up{job="app"}')
                    got = await _value(prom.url, "histogram_count(shoal_e2e_seconds)")
                    if up == 1.0 and (got is not None or not send):
                        st = rw.status()["endpoints"][0]
                        if send or st["histograms_dropped"].get("native_histograms_disabled"):
                            break
                st = rw.status()["endpoints"][0]
                s = await _value(prom.url, "histogram_sum(shoal_e2e_seconds)")
                await c.stop()
                return got, s, st

            got, s, st = run(go())
        if send:
            assert got == 8.0 and s is not None and math.isclose(s, 3.5), (got, s, st)
            assert st["histograms_sent"] >= 1
        else:
            assert got is None and s is None
            assert st["histograms_dropped"]["native_histograms_disabled"] >= 1 and st["histograms_sent"] == 0
    finally:
        exp.stop()
