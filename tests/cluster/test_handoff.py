"""A stalled agent's unsent samples for targets that moved away are dropped, not refused by Prometheus.

Three real ``shoal run`` agents share real targets and write through
``prometheus.relabel`` (the handoff markers must survive relabeling) to a real
Prometheus that refuses out-of-order samples. One agent writes through the
fault proxy, which refuses its writes (503) for a moment so that its queue
holds unsent samples (a batch being retried, the open batch), and then it is
SIGSTOPped; the backend is healthy again while it is stopped, and the
others take its targets over and write newer samples for the same series.
On SIGCONT the agent must not send its old samples: Prometheus counts no
out-of-order sample and no 4xx on its write handler, the agent counts no
failed sample, and it counts the samples it dropped as ``handed_off``.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import procs
from tests.cluster.test_agents import HOSTS, Agents, rejected_writes, settled
from tests.faultproxy import FaultProxy
from tests.targets import Target

pytestmark = pytest.mark.timeout(240)

TARGETS = 24
INTERVAL = 2.0  # the batch deadline is well under it: a healthy handoff keeps the last scrape
DEADLINE = "500ms"
VICTIM = 1


def config(targets: list[Target], prom: str) -> str:
    items = ", ".join(f'{{"__address__" = "{t.address}"}}' for t in targets)
    return f"""
prometheus.scrape "t" {{
  targets = [{items}]
  forward_to = [prometheus.relabel.r.receiver]
  scrape_interval = "{INTERVAL:g}s"
  scrape_timeout = "1500ms"
  job_name = "cluster"
  clustering {{
    enabled = true
  }}
}}
prometheus.relabel "r" {{
  forward_to = [prometheus.remote_write.p.receiver]
  rule {{
    target_label = "via"
    replacement  = "relabel"
  }}
}}
prometheus.remote_write "p" {{
  endpoint {{
    url = "{prom}/api/v1/write"
    queue_config {{
      batch_send_deadline = "{DEADLINE}"
    }}
  }}
}}
"""


def metric(url: str, name: str, **labels: str) -> float:
    """The sum of one family's samples in an agent's /metrics whose labels include ``labels``."""
    text = httpx.get(url + "/metrics", timeout=5).text
    want = [f'{k}="{v}"' for k, v in labels.items()]
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name)] in "{ " and all(w in line for w in want):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest,
            ) -> Iterator[tuple[Agents, list[Target], procs.Proc, FaultProxy]]:
    extra: tuple[str, ...] = getattr(request, "param", ())  # flags for every agent
    targets = [Target(f"handoff_test_metric{{i=\"{i}\"}} {i}\n").start() for i in range(TARGETS)]
    with procs.prometheus(tmp_path / "prom") as prom, FaultProxy(prom.url) as proxy:
        direct, proxied = tmp_path / "direct.alloy", tmp_path / "proxied.alloy"
        direct.write_text(config(targets, prom.url))
        proxied.write_text(config(targets, proxy.url))
        agents = Agents(tmp_path, direct)
        try:
            for i in range(len(HOSTS)):
                agents.cfg = proxied if i == VICTIM else direct
                agents.start(i, *extra)
            yield agents, targets, prom, proxy
        finally:
            agents.stop_all()
            for t in targets:
                t.stop()


def test_a_resumed_agent_drops_what_it_no_longer_owns_and_prometheus_refuses_nothing(
    cluster: tuple[Agents, list[Target], procs.Proc, FaultProxy],
) -> None:
    agents, targets, prom, proxy = cluster
    everyone = {f"agent{i}" for i in range(len(HOSTS))}
    procs.eventually(lambda: settled(agents, everyone), timeout=30, interval=0.2)
    time.sleep(3 * INTERVAL)
    assert rejected_writes(prom.url) == 0
    victim = agents.url(VICTIM)
    moved = [t for t in targets if t.address in agents.owned(VICTIM)]
    assert moved

    # Its writes are refused until it holds unsent samples of two scrapes of each of its
    # targets (a batch retried, the open batch), then it stops; the backend is healthy again.
    refused = proxy.fail(503)
    proxy.wait_for(3, timeout=20, path="/api/v1/write", outcome="status")
    time.sleep(2 * INTERVAL)
    agents.signal(VICTIM, signal.SIGSTOP)
    proxy.clear(refused)
    survivors = everyone - {f"agent{VICTIM}"}
    procs.eventually(lambda: settled(agents, survivors, [0, 2]), timeout=20, interval=0.1)
    time.sleep(3 * INTERVAL)  # the new owners' newer samples are in Prometheus now
    for t in moved:
        assert t.requests and t.requests[-1].time > time.time() - 2 * INTERVAL, t.address
    agents.signal(VICTIM, signal.SIGCONT)

    # It resumes, drops what it held for the moved targets, and takes its share back.
    procs.eventually(lambda: settled(agents, everyone), timeout=30, interval=0.2)
    time.sleep(3 * INTERVAL)
    dropped = metric(victim, "prometheus_remote_storage_samples_dropped_total", reason="handed_off")
    failed = metric(victim, "prometheus_remote_storage_samples_failed_total")
    print(f"victim: handed_off dropped {dropped:g}, failed {failed:g}")
    assert dropped > 0
    assert failed == 0
    assert rejected_writes(prom.url) == 0
    # Every target's series arrived relabeled, one series per target, as before the stall.
    got = procs.query(prom.url, 'handoff_test_metric{job="cluster",via="relabel"}')
    assert len(got) == TARGETS


# The failure detector's and the progress rule's defaults: a member is declared dead no sooner
# than 4 s of suspicion, demoted after 5 s of unchanged progress (the module's tuning takes over
# within about 1.5 s, which would make every stall a takeover).
DEFAULT_TIMINGS = ("--cluster.tuning=probe_interval=1,probe_timeout=0.5,suspicion_mult=4,"
                   "push_pull_interval=2,rejoin_interval=2,progress_timeout=5,healthy_hold=3,"
                   # the ramp and the grace as the module's tuning has them (no takeover rule)
                   "drain_hold=3,ramp_step=1,start_grace=2",)
SHORT_STALL = 2.0  # over the 1.5 s stall threshold, too short for any peer to take over


@pytest.mark.parametrize("cluster", [DEFAULT_TIMINGS], indirect=True)
def test_a_stall_too_short_for_a_takeover_hands_nothing_off_and_loses_nothing(
    cluster: tuple[Agents, list[Target], procs.Proc, FaultProxy],
) -> None:
    """The agent holds unsent samples (its writes refused), stops for 2 s and resumes: it finds
    the stall but keeps its targets (no peer can have owned them meanwhile), so no handoff
    marker is written, nothing is dropped, and the samples it held all reach Prometheus."""
    agents, targets, prom, proxy = cluster
    everyone = {f"agent{i}" for i in range(len(HOSTS))}
    procs.eventually(lambda: settled(agents, everyone), timeout=30, interval=0.2)
    time.sleep(3 * INTERVAL)
    victim = agents.url(VICTIM)
    mine = [t for t in targets if t.address in agents.owned(VICTIM)]
    assert mine
    moved = metric(victim, "prometheus_scrape_targets_moved_total")

    refused = proxy.fail(503)
    proxy.wait_for(3, timeout=20, path="/api/v1/write", outcome="status")
    held_from = time.time()
    time.sleep(2 * INTERVAL)  # unsent: a batch retried, the open batch
    agents.signal(VICTIM, signal.SIGSTOP)
    stopped = time.time()
    proxy.clear(refused)
    time.sleep(SHORT_STALL)
    agents.signal(VICTIM, signal.SIGCONT)

    def delivered(t: Target) -> bool:
        expr = (f'count_over_time(handoff_test_metric{{instance="{t.address}",via="relabel"}}'
                f"[{int((stopped - held_from) * 1000)}ms])")
        return bool(procs.query(prom.url, expr, at=stopped))

    procs.eventually(lambda: all(delivered(t) for t in mine), timeout=30, interval=0.5)
    time.sleep(2 * INTERVAL)
    log = agents.procs[HOSTS[VICTIM]].log_text()
    assert "no peer can have taken our targets" in log  # the stall was seen, and judged short
    dropped = metric(victim, "prometheus_remote_storage_samples_dropped_total", reason="handed_off")
    failed = metric(victim, "prometheus_remote_storage_samples_failed_total")
    print(f"victim after a {SHORT_STALL:g} s stall: handed_off dropped {dropped:g}, failed {failed:g}")
    assert dropped == 0 and failed == 0
    assert metric(victim, "prometheus_scrape_targets_moved_total") == moved
    assert agents.owned(VICTIM) == {t.address for t in mine}
    assert rejected_writes(prom.url) == 0
