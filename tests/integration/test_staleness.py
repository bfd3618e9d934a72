"""Issue 4's staleness proof: stale markers from `shoal run` arrive in a real Prometheus.

Shoal and `prometheus --enable-feature=agent` scrape the same real targets
(tests/targets.py) every second with the same jobs and remote-write into one
real Prometheus under ``agent="shoal"`` and ``agent="prometheus"``. Every
expectation is checked against both, so the test also shows that it is
Prometheus' own behaviour being asked of Shoal:

- a series that vanishes from a response gets a stale marker at the first
  scrape that misses it (the query there is empty, 1 ms before it is not);
- a target that stops answering: ``up`` becomes 0 (not stale) and every
  series it exposed gets a marker at that failed scrape;
- a target removed from a job's targets (config reload): ~2 intervals later
  all its series, ``up`` and the other scrape series included, are stale;
- a whole job removed from the config: no markers (Prometheus stops the
  pool without end-of-run staleness, Alloy removing a component likewise).

Prometheus' API hides stale NaNs from range vectors, so markers are seen as
what they do: an instant query at or after one returns nothing, where without
it the last sample would be returned for 5 minutes (the lookback).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests import procs
from tests.targets import Target

pytestmark = pytest.mark.integration

AGENTS = {"shoal": "Shoal/", "prometheus": "Prometheus/"}  # agent label -> User-Agent prefix
REPORT = (
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
)

ALLOY_JOB = """
prometheus.scrape "{job}" {{
  targets         = [{targets}]
  job_name        = "{job}"
  forward_to      = [prometheus.remote_write.prom.receiver]
  scrape_interval = "1s"
  scrape_timeout  = "800ms"
}}
"""

ALLOY_WRITE = """
prometheus.remote_write "prom" {{
  external_labels = {{"agent" = "shoal"}}
  endpoint {{
    url = "{prom}/api/v1/write"
    queue_config {{
      batch_send_deadline = "200ms"
    }}
  }}
}}
"""


def alloy_config(prom: str, jobs: dict[str, list[Target]]) -> str:
    parts = [ALLOY_WRITE.format(prom=prom)]
    for job, targets in jobs.items():
        ts = ", ".join(f'{{"__address__" = "{t.address}"}}' for t in targets)
        parts.append(ALLOY_JOB.format(job=job, targets=ts))
    return "".join(parts)


def prometheus_config(prom: str, jobs: dict[str, list[Target]]) -> str:
    return json.dumps(
        {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "800ms",
                "external_labels": {"agent": "prometheus"},
            },
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [t.address for t in targets]}]}
                for job, targets in jobs.items()
            ],
            "remote_write": [
                {"url": f"{prom}/api/v1/write", "queue_config": {"batch_send_deadline": "200ms"}}
            ],
        },
        indent=1,
    )


class Receiver:
    """Queries against the receiving Prometheus; times are unix seconds (ms precision)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def at(self, expr: str, t: float | None = None) -> list[dict]:
        return procs.query(self.url, expr, None if t is None else round(t, 3))

    def value(self, expr: str, t: float | None = None) -> str | None:
        res = self.at(expr, t)
        assert len(res) <= 1, (expr, res)
        return res[0]["value"][1] if res else None

    def samples(self, selector: str, window: str = "1m") -> list[tuple[float, str]]:
        """The real samples of one series (stale markers are hidden by the API)."""
        res = self.at(f"{selector}[{window}]")
        assert len(res) <= 1, (selector, res)
        return [(float(t), v) for t, v in res[0]["values"]] if res else []


def sel(name: str, agent: str, target: Target) -> str:
    return f'{name}{{agent="{agent}",instance="{target.address}"}}'


def requests_by(target: Target, version: int, agent: str) -> list[float]:
    return [
        r.time
        for r in target.served(version)
        if r.headers.get("user-agent", "").startswith(AGENTS[agent])
    ]


@dataclass
class Agents:
    """Shoal and the Prometheus agent, configured alike; ``apply`` rewrites both and reloads."""

    prom: str
    shoal_url: str
    shoal_cfg: Path
    peer_url: str
    peer_cfg: Path

    def apply(self, jobs: dict[str, list[Target]]) -> None:
        self.shoal_cfg.write_text(alloy_config(self.prom, jobs))
        self.peer_cfg.write_text(prometheus_config(self.prom, jobs))
        for url in (self.shoal_url, self.peer_url):
            r = httpx.post(url + "/-/reload", timeout=30)
            assert r.status_code == 200, r.text


def test_stale_markers_reach_prometheus(tmp_path: Path) -> None:
    changing = Target(
        "# TYPE demo_kept gauge\ndemo_kept 1\n# TYPE demo_dropped gauge\ndemo_dropped 2\n"
    )
    removed = Target("demo_kept 3\ndemo_other 4\n")
    flaky = Target("demo_kept 5\ndemo_other 6\n")
    with changing, removed, flaky, procs.prometheus(tmp_path / "receiver") as prom:
        jobs = {"demo": [changing, removed], "flaky": [flaky]}
        cfg = tmp_path / "agent.alloy"
        cfg.write_text(alloy_config(prom.url, jobs))
        shoal = procs.agent(tmp_path, cfg, "--config.watch-interval=0")
        try:
            with procs.prometheus_agent(
                tmp_path / "peer", prometheus_config(prom.url, jobs)
            ) as peer:
                procs.wait_http(shoal.url + "/-/ready", proc=shoal.popen)
                agents = Agents(
                    prom.url, shoal.url, cfg, peer.url, tmp_path / "peer" / "prometheus-agent.yml"
                )
                story(Receiver(prom.url), agents, changing, removed, flaky)
        finally:
            shoal.stop()


def story(rx: Receiver, agents: Agents, changing: Target, removed: Target, flaky: Target) -> None:
    # Everything arrives from both agents.
    def all_up() -> bool:
        for agent in AGENTS:
            for t, value in ((changing, "1"), (removed, "3"), (flaky, "5")):
                assert rx.value(sel("up", agent, t)) == "1", (agent, t.address)
                assert rx.value(sel("demo_kept", agent, t)) == value
            assert rx.value(sel("demo_dropped", agent, changing)) == "2"
        return True

    procs.eventually(all_up, timeout=45)

    # 1. A series vanishes from a response: a marker at the first scrape without it.
    v1 = changing.version
    v2 = changing.set("# TYPE demo_kept gauge\ndemo_kept 1\n")
    for agent in AGENTS:
        first_new = procs.eventually(lambda a=agent: requests_by(changing, v2, a), timeout=15)[0]
        last_old = max(requests_by(changing, v1, agent))

        def marker_scrape(a: str = agent, lo: float = last_old, hi: float = first_new) -> float:
            # The scrape that first saw v2 is stamped before its request and after the last v1 one.
            ts = [t for t, _ in rx.samples(sel("demo_kept", a, changing)) if lo < t <= hi + 0.005]
            assert len(ts) == 1, (a, lo, hi, ts)
            return ts[0]

        t_mark = procs.eventually(marker_scrape, timeout=15)
        dropped = sel("demo_dropped", agent, changing)
        procs.eventually(lambda s=dropped, t=t_mark: rx.at(s, t) == [], timeout=15)
        assert rx.value(dropped, t_mark - 0.001) == "2", agent  # the sample before the marker
        assert rx.samples(dropped)[-1][0] < t_mark  # the marker itself is not a sample to the API
        assert rx.value(sel("demo_kept", agent, changing), t_mark) == "1"
        assert rx.value(sel("up", agent, changing), t_mark) == "1"
        assert rx.at(dropped) == []  # and it stays gone

    # 2. A target stops answering: up is 0, its series are stale from that failed scrape on.
    t_stop = time.time()
    flaky.stop()
    for agent in AGENTS:
        up = sel("up", agent, flaky)

        def failed_scrape(s: str = up) -> float:
            ts = [t for t, v in rx.samples(s) if v == "0" and t > t_stop - 0.005]
            assert ts, s
            return ts[0]

        t_fail = procs.eventually(failed_scrape, timeout=15)
        for name, before in (("demo_kept", "5"), ("demo_other", "6")):
            s = sel(name, agent, flaky)
            procs.eventually(lambda s=s, t=t_fail: rx.at(s, t) == [], timeout=15)
            assert rx.value(s, t_fail - 0.001) == before, (agent, name)
        # The scrape's own series are written, not marked stale.
        assert rx.value(sel("scrape_samples_scraped", agent, flaky), t_fail) == "0"
        assert rx.value(sel("scrape_duration_seconds", agent, flaky), t_fail) is not None
        assert rx.value(sel("demo_kept", agent, changing)) == "1"

    # Back on the same port: the same series again.
    flaky.start()
    for agent in AGENTS:
        procs.eventually(lambda a=agent: rx.value(sel("demo_other", a, flaky)) == "6", timeout=15)
        assert rx.value(sel("up", agent, flaky)) == "1"

    # 3. A target removed from its job (config reload): ~2 intervals later everything it had is stale.
    gone = f'{{agent="AGENT",instance="{removed.address}"}}'
    for agent in AGENTS:
        names = {r["metric"]["__name__"] for r in rx.at(gone.replace("AGENT", agent))}
        assert names == {*REPORT, "demo_kept", "demo_other"}, (agent, names)
    # Prometheus applies the new target list after its discovery delay (~5 s).
    agents.apply({"demo": [changing], "flaky": [flaky]})
    emptied = {}
    for agent in AGENTS:
        sel_all = gone.replace("AGENT", agent)
        procs.eventually(lambda s=sel_all: rx.at(s) == [], timeout=30)
        emptied[agent] = time.time()
        # Without markers each series would still answer here, from its last sample.
        last = rx.samples(sel("up", agent, removed))[-1][0]
        assert len(rx.at(sel_all, last)) == len(REPORT) + 2, agent
        assert rx.value(sel("demo_kept", agent, changing)) == "1"
        assert rx.value(sel("up", agent, flaky)) == "1"
    assert removed.running
    for agent in AGENTS:  # and the removed target is no longer scraped
        late = [t for t in requests_by(removed, removed.version, agent) if t > emptied[agent]]
        assert late == [], agent

    # 4. A whole job removed: Prometheus stops its pool without markers, so the series linger.
    t_reload = time.time()
    agents.apply({"demo": [changing]})
    time.sleep(4.0)  # two intervals for end-of-run staleness, plus margin
    for agent in AGENTS:
        assert [t for t in requests_by(flaky, flaky.version, agent) if t > t_reload + 1.0] == []
        assert rx.value(sel("demo_kept", agent, flaky)) == "5", agent
        assert rx.value(sel("up", agent, flaky)) == "1", agent
