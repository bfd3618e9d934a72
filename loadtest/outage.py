"""Issue 5's long outage: N `shoal run` agents, a real Prometheus that disappears, and what comes back.

Why: the remote-write queue promises that after an outage every sample
arrives, in order, and that N agents reconnecting at once do not hit the
recovering backend with N backlogs flat out. The pytest version
(tests/remote/test_outage.py) drives the engine for 30 s; this script drives
whole `shoal run` processes scraping real HTTP targets through a minutes-long
outage, and prints the figures.

Setup (everything on 127.0.0.1, every phase bounded, every process stopped
at the end, also on Ctrl-C / SIGTERM):

    targets (tests/targets.py, in this process) --scrape--> agent a0..aN-1 (`shoal run`)
        --remote write--> fault proxy (tests/faultproxy.py, own process) --> Prometheus

Every target serves counters whose value is the target's payload version;
the payload changes four times per scrape interval and each target logs the
version every scrape got, so the value of every series at every scrape is
known. Each agent sends an ``X-Outage-Agent`` header, so the proxy's request
log tells the agents apart.

Phases: warm-up, a steady window, the backend refused (connections refused
by the proxy) for ``--outage`` seconds, then back; the script watches until
every agent's queue has caught up (lag between the newest appended and the
newest sent timestamp back to its steady level), then at least ``--after``
seconds, at most ``--max-drain``. Then the targets answer 503 (so the request
logs are final) and Prometheus is queried: every series of every target must
hold exactly one sample per scrape with the value that scrape was served, in
scrape order, and Prometheus must have rejected nothing.

    .venv/bin/python loadtest/outage.py                 # 3 agents, 180 s outage, ~7 minutes
    .venv/bin/python loadtest/outage.py --outage 30 --steady 15 --after 30
    .venv/bin/python loadtest/outage.py --queue max_samples_per_send=500 --json out.json
    .venv/bin/python loadtest/outage.py --agents 3,10 --outage 40,180   # issue 10's four tables

Several ``--agents`` counts and ``--outage`` lengths run every combination in
turn, each with every ``--kinds`` agent, and print issue 10's table for each
combination at the end (with the run's time and load average).

A plain ``python`` re-executes itself with the repository's .venv when it is
there. Exit status: 0 when every sample arrived in order with no rejection, 1
otherwise, 2 on a setup failure.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_PY = ROOT / ".venv" / "bin" / "python"
WRITE = "/api/v1/write"
METRIC = "shoal_outage_total"
HEADER = "X-Outage-Agent"
COMPONENT = "prometheus.remote_write.out"
KINDS = ("shoal", "prometheus", "vmagent")
NAMES = {"shoal": "Shoal", "prometheus": "Prometheus 2.42 agent", "vmagent": "vmagent"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="N shoal agents scrape real targets and remote-write through a fault proxy into a "
        "real Prometheus, which is refused for --outage seconds; prints request rates before, "
        "during and after, the drain time, and checks every sample arrived in order.",
    )
    ap.add_argument("--agents", default="3",
                    help="agent processes; a comma-separated list runs each count in turn (default 3)")
    ap.add_argument("--targets", type=int, default=10, help="targets per agent (default 10)")
    ap.add_argument("--series", type=int, default=200, help="counter series per target (default 200)")
    ap.add_argument("--interval", type=float, default=1.0, help="scrape interval, seconds (default 1)")
    ap.add_argument("--warmup", type=float, default=20.0,
                    help="seconds after every agent delivers, before the steady window (default 20)")
    ap.add_argument("--steady", type=float, default=30.0,
                    help="steady window before the outage, seconds (default 30)")
    ap.add_argument("--outage", default="180",
                    help="seconds the backend fails; a comma-separated list runs each in turn, for every "
                    "--agents count (default 180)")
    ap.add_argument("--after", type=float, default=60.0,
                    help="seconds watched after recovery at least (default 60)")
    ap.add_argument("--max-drain", type=float, default=600.0,
                    help="seconds after recovery to wait for every queue to catch up (default 600)")
    ap.add_argument("--queue", action="append", default=[], metavar="KEY=VALUE",
                    help="a queue_config argument for every agent, e.g. max_samples_per_send=500 or "
                    "max_backoff=\"5s\" (repeatable; values are Alloy syntax; default: Alloy's defaults)")
    ap.add_argument("--kinds", default="shoal,prometheus,vmagent",
                    help="agents to run the same scenario with, one after the other in this run: shoal, "
                    "prometheus (2.42 agent mode), vmagent (default: all three)")
    ap.add_argument("--fault", choices=("503", "refuse"), default="503",
                    help="the outage: the proxy answers 503 to every write (default), or refuses connections")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="folder for configs, WALs and logs (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--json", type=Path, default=None, help="also write every figure to this file")
    args = ap.parse_args(argv)
    try:
        args.agent_counts = [int(x) for x in args.agents.split(",") if x.strip()]
        args.outages = [float(x) for x in args.outage.split(",") if x.strip()]
    except ValueError as exc:
        ap.error(f"--agents takes whole numbers and --outage seconds, comma-separated: {exc}")
    if not args.agent_counts or min(args.agent_counts) < 1:
        ap.error("--agents must be at least 1")
    if not args.outages or min(args.outages) <= 0:
        ap.error("--outage must be positive")
    args.agents, args.outage = args.agent_counts[0], args.outages[0]
    for name in ("targets", "series"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1")
    for name in ("interval", "steady"):
        if getattr(args, name) <= 0:
            ap.error(f"--{name.replace('_', '-')} must be positive")
    for name in ("warmup", "after", "max_drain"):
        if getattr(args, name) < 0:
            ap.error(f"--{name.replace('_', '-')} must not be negative")
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if not args.kinds or any(k not in KINDS for k in args.kinds):
        ap.error(f"--kinds takes a comma-separated subset of {', '.join(KINDS)}")
    for q in args.queue:
        if not re.fullmatch(r"[a-z_0-9]+=\S.*", q):
            ap.error(f"--queue takes KEY=VALUE, got {q!r}")
    return args


# ---------------------------------------------------------------- the workload


def payload(prefixes: list[str], version: int) -> bytes:
    v = f" {version}\n"
    return ("# TYPE shoal_outage_total counter\n" + v.join(prefixes) + v).encode()


class Changer:
    """Bumps every target's payload every ``period`` seconds: version v serves value v."""

    def __init__(self, targets: list[Any], prefixes: list[str], period: float) -> None:
        self.targets, self.prefixes, self.period = targets, prefixes, period
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="changer", daemon=True)

    def _run(self) -> None:
        while not self.done.wait(self.period):
            for t in self.targets:
                with t.lock:  # only this thread sets, so version + 1 is what set() will make it
                    v = t.version + 1
                t.set(payload(self.prefixes, v))

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


def agent_config(i: int, targets: list[Any], url: str, interval: float, queue: list[str]) -> str:
    addrs = ", ".join(f'{{"__address__" = "{t.address}"}}' for t in targets)
    qc = "".join(f"      {k} = {v}\n" for k, v in (q.split("=", 1) for q in queue))
    return f"""prometheus.scrape "outage" {{
  targets         = [{addrs}]
  job_name        = "outage"
  forward_to      = [prometheus.remote_write.out.receiver]
  scrape_interval = "{interval * 1000:.0f}ms"
  scrape_timeout  = "{interval * 800:.0f}ms"
}}

prometheus.remote_write "out" {{
  external_labels = {{"agent" = "a{i}"}}
  endpoint {{
    url     = "{url}"
    headers = {{"{HEADER}" = "a{i}"}}
    queue_config {{
{qc}    }}
  }}
}}
"""


def prometheus_config(i: int, targets: list[Any], url: str, interval: float) -> str:
    """The same scrape and remote write for `prometheus --enable-feature=agent` (its defaults)."""
    addrs = ", ".join(f'"{t.address}"' for t in targets)
    return f"""global:
  scrape_interval: {interval * 1000:.0f}ms
  scrape_timeout: {interval * 800:.0f}ms
  external_labels: {{agent: a{i}}}
scrape_configs:
  - job_name: outage
    static_configs: [{{targets: [{addrs}]}}]
remote_write:
  - url: {url}
    basic_auth: {{username: a{i}, password: outage}}
"""


def agent_of(r: Any) -> str | None:
    """Which agent sent a request: Shoal's header, or the peers' basic-auth user name.

    Prometheus 2.42 (Debian) does not send remote_write ``headers``, so the peers say
    who they are as a basic-auth user, which the proxy forwards and Prometheus ignores.
    """
    h = r.header(HEADER)
    if h:
        return h
    auth = r.header("Authorization") or ""
    if auth.startswith("Basic "):
        try:
            return base64.b64decode(auth[6:]).decode().split(":", 1)[0]
        except (ValueError, UnicodeDecodeError):
            return None
    return None


def start_peer(kind: str, i: int, d: Path, targets: list[Any], url: str, interval: float, procs: Any) -> Any:
    """One Prometheus agent or vmagent process (the caller stops it), with its defaults."""
    port = procs.free_port()
    cfg = d / "scrape.yml"
    cfg.write_text(prometheus_config(i, targets, url, interval))
    if kind == "prometheus":
        args = ["prometheus", "--enable-feature=agent", f"--config.file={cfg}",
                f"--storage.agent.path={d / 'data'}", f"--web.listen-address=127.0.0.1:{port}"]
        ready = "/-/ready"
    else:
        args = ["vmagent", f"-promscrape.config={cfg}", "-promscrape.config.strictParse=false", f"-remoteWrite.url={url}",
                f"-remoteWrite.tmpDataPath={d / 'data'}", f"-httpListenAddr=127.0.0.1:{port}",
                f"-remoteWrite.label=agent=a{i}", f"-remoteWrite.basicAuth.username=a{i}",
                "-remoteWrite.basicAuth.password=outage"]
        ready = "/health"
    p = procs.spawn(args, d, kind)
    p.url = f"http://127.0.0.1:{port}"
    procs.wait_http(p.url + ready, timeout=60, proc=p.popen)
    return p


# ---------------------------------------------------------------- watching the agents


@dataclass
class Poll:
    t: float  # monotonic
    lag: float | None  # newest appended minus newest sent timestamp, seconds
    limited: bool | None  # the rate controller is in recovery
    shards: int | None
    sent: int | None  # samples acknowledged by the backend so far
    rate: dict[str, Any] | None = None  # the endpoint's send_rate status (why an agent drains slowly)


@dataclass
class Watcher:
    """Polls every agent's /metrics and component status twice a second, in a thread."""

    urls: list[str]
    polls: list[list[Poll]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        import httpx

        self.polls = [[] for _ in self.urls]
        self.client = httpx.Client(timeout=5)
        self.thread = threading.Thread(target=self._run, name="watcher", daemon=True)

    def _run(self) -> None:
        while not self.done.wait(0.5):
            for i, url in enumerate(self.urls):
                self.polls[i].append(self._poll(url))

    def _poll(self, url: str) -> Poll:
        now = time.monotonic()
        lag = limited = shards = sent = rate = None
        try:
            text = self.client.get(url + "/metrics").text
            high = _metric(text, "prometheus_remote_storage_highest_timestamp_in_seconds")
            sent = _metric(text, "prometheus_remote_storage_queue_highest_sent_timestamp_seconds")
            if high and sent:
                lag = max(0.0, high - sent)
            st = self.client.get(f"{url}/api/v0/web/components/{COMPONENT}").json()
            for d in st.get("debugInfo", []):
                if d["name"] == "endpoints":
                    ep = _plain(d["value"])[0]
                    rate = ep["send_rate"]
                    limited, shards = bool(rate["limited"]), int(ep["shards"])
                    sent = int(ep["samples_sent"])
        except Exception:  # noqa: BLE001 - an agent too busy to answer is a missing point, not a failure
            pass
        return Poll(now, lag, limited, shards, sent, rate)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.done.set()
        self.thread.join()
        self.client.close()

    def status(self, url: str) -> dict[str, Any]:
        st = self.client.get(f"{url}/api/v0/web/components/{COMPONENT}").json()
        for d in st["debugInfo"]:
            if d["name"] == "endpoints":
                return _plain(d["value"])[0]
        raise RuntimeError(f"no endpoint status from {url}")


def _metric(text: str, name: str) -> float | None:
    m = re.search(rf"^{name}\{{[^}}]*component_id=\"{re.escape(COMPONENT)}\"[^}}]*\}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def _plain(v: dict) -> Any:
    if v["type"] == "object":
        return {kv["key"]: _plain(kv["value"]) for kv in v["value"]}
    if v["type"] == "array":
        return [_plain(x) for x in v["value"]]
    return v.get("value")


def caught_up(polls: list[Poll], since: float, level: float) -> float | None:
    """Seconds from ``since`` to the first poll whose lag is back to ``level`` (None: not yet)."""
    for p in polls:
        if p.t >= since and p.lag is not None and p.lag <= level:
            return p.t - since
    return None


def rate_control_ended(polls: list[Poll], since: float) -> float | None:
    """Seconds from ``since`` to the first poll where the rate controller left recovery after it."""
    began = False
    for p in polls:
        if p.t < since:
            continue
        if p.limited:
            began = True
        elif began and p.limited is False:
            return p.t - since
    return None


# ---------------------------------------------------------------- the run


def run(args: argparse.Namespace, work: Path, kind: str = "shoal") -> dict[str, Any]:
    import httpx

    from tests import faultproxy, procs
    from tests import targets as target_mod
    from tests.targets import Target

    # http.server prints a traceback for every keep-alive connection a scraper resets (an agent
    # timing out a scrape, or stopping); here that is expected noise, so it is dropped.
    target_mod._Server.handle_error = lambda self, request, client_address: None  # type: ignore[method-assign]

    out: dict[str, Any] = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                           "kind": kind, "began": time.strftime("%H:%M:%S", time.gmtime()),
                           "load_began": round(os.getloadavg()[0], 1)}
    prefixes = [f'{METRIC}{{series="{k}"}}' for k in range(args.series)]
    with contextlib.ExitStack() as stack:
        prom = stack.enter_context(procs.prometheus(work / "prom"))
        proxy = stack.enter_context(faultproxy.spawn(prom.url, work))
        ctl = proxy.control
        targets = [[stack.enter_context(Target(payload(prefixes, 1))) for _ in range(args.targets)]
                   for _ in range(args.agents)]
        every = [t for ts in targets for t in ts]
        changer = Changer(every, prefixes, args.interval / 4)
        changer.start()
        stack.callback(changer.stop)

        agents = []
        for i in range(args.agents):
            d = work / f"a{i}"
            d.mkdir(parents=True, exist_ok=True)
            if kind == "shoal":
                cfg = d / "agent.alloy"
                cfg.write_text(agent_config(i, targets[i], proxy.url + WRITE, args.interval, args.queue))
                a = procs.agent(d, cfg, "--config.watch-interval=0")
            else:
                a = start_peer(kind, i, d, targets[i], proxy.url + WRITE, args.interval, procs)
            stack.callback(a.stop)
            agents.append(a)
        for a in agents:
            if kind == "shoal":
                procs.wait_http(a.url + "/-/ready", timeout=60, proc=a.popen)
        t_start_wall = time.time()
        # Every agent delivers before anything is measured.
        deadline = time.monotonic() + 120
        for i in range(args.agents):
            while not [r for r in ctl.requests(path=WRITE) if agent_of(r) == f"a{i}" and r.status == 204]:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"agent a{i} delivered nothing within 120 s; see {work}")
                time.sleep(0.2)
        watcher = Watcher([a.url for a in agents] if kind == "shoal" else [])  # peers: no status API
        watcher.start()
        stack.callback(watcher.stop)
        say(f"{kind}: all {args.agents} agents deliver; warm-up {args.warmup:.0f} s, steady {args.steady:.0f} s")
        time.sleep(args.warmup)
        t_steady = time.monotonic()
        time.sleep(args.steady)

        t_down = time.monotonic()
        if args.fault == "refuse":
            ctl.refuse()
        else:
            fid = ctl.fail(503, path=WRITE, body="outage")
        say(f"backend {'refused' if args.fault == 'refuse' else 'answering 503'} for {args.outage:.0f} s")
        time.sleep(args.outage)
        if args.fault == "refuse":
            ctl.accept()
        else:
            ctl.clear(fid)
        t_up = time.monotonic()
        load_at_recovery = round(os.getloadavg()[0], 1)
        say(f"backend back (load average {load_at_recovery}); watching the drain")

        # The lag every queue shows in steady state, and the level it must return to.
        steady_lag = [max((p.lag for p in ps if t_steady <= p.t < t_down and p.lag is not None), default=0.0)
                      for ps in watcher.polls]
        levels = [lag + args.interval for lag in steady_lag]
        while True:
            now = time.monotonic()
            drained = [caught_up(ps, t_up, lv) for ps, lv in zip(watcher.polls, levels, strict=True)]
            if all(d is not None for d in drained) and now - t_up >= args.after:
                break
            if now - t_up >= max(args.after, args.max_drain):
                break
            time.sleep(0.5)
        t_end = time.monotonic()

        # Final: the targets fail from here, so the request logs are complete; wait for the last sends.
        failing = {id(t): t.set("down\n", status=503) for t in every}
        changer.stop()
        flushed = True
        deadline = time.monotonic() + 120
        while True:
            ps = [ws[-1] if ws else None for ws in watcher.polls]
            if all(p is not None and p.t > t_end + 2 * args.interval and p.lag is not None and p.lag <= lv
                   and not p.limited for p, lv in zip(ps, levels, strict=True)):
                break
            if time.monotonic() > deadline:
                flushed = False
                break
            time.sleep(0.5)
        time.sleep(2 * args.interval)
        statuses = [watcher.status(a.url) for a in agents] if kind == "shoal" else []

        # ---- request rates from the proxy's log
        recs = ctl.requests(path=WRITE)
        out["rates"] = rates(recs, watcher.polls, args, t_steady, t_down, t_up, t_end)
        out["drain"] = {
            "steady_lag_s": [round(x, 2) for x in steady_lag],
            "caught_up_s": [None if d is None else round(d, 1) for d in drained],
            "rate_control_ended_s": [rate_control_ended(ps, t_up) for ps in watcher.polls],
            "max_shards_after": [max((p.shards or 0 for p in ps if p.t >= t_up), default=None)
                                 for ps in watcher.polls],
            "flushed": flushed,
        }
        # Per agent, for finding a straggler: its rate controller over time and its requests after recovery.
        out["traces"] = [[{"t": round(p.t - t_up, 2), "lag": p.lag, **(p.rate or {})} for p in ps
                          if p.t >= t_down - 5] for ps in watcher.polls]
        out["requests_after"] = {
            f"a{i}": [(round(r.t - t_up, 2), r.body_size, r.status) for r in recs
                      if agent_of(r) == f"a{i}" and t_up - 2 <= r.t < t_end]
            for i in range(args.agents)
        }
        out["agents"] = [
            {k: st[k] for k in ("samples_sent", "samples_retried", "samples_failed", "samples_dropped",
                                "shards", "reshards", "send_rate", "last_error")}
            for st in statuses
        ]

        # ---- every sample, in order
        out["check"] = verify(prom.url, targets, failing, args, t_start_wall, httpx)
        out["prometheus"] = write_errors(prom.url, httpx)
        for t in every:  # before the agents stop: they would reset the keep-alive connections
            t.stop()
        out["ended"] = time.strftime("%H:%M:%S", time.gmtime())
        out["load_ended"] = round(os.getloadavg()[0], 1)
        out["load_at_recovery"] = load_at_recovery
    return out


def sent_at(polls: list[Poll], t: float) -> int | None:
    """Samples an agent had delivered by ``t`` (its last poll at or before t)."""
    last = None
    for p in polls:
        if p.t > t:
            break
        if p.sent is not None:
            last = p.sent
    return last


def rates(recs: list[Any], polls: list[list[Poll]], args: argparse.Namespace, t_steady: float,
          t_down: float, t_up: float, t_end: float) -> dict[str, Any]:
    def count(a: float, b: float) -> int:
        return sum(1 for r in recs if a <= r.t < b)

    def delivered(a: float, b: float) -> int | None:
        if not polls:  # peers: not watched
            return None
        n = 0
        for ps in polls:
            x, y = sent_at(ps, a), sent_at(ps, b)
            if x is None or y is None:
                return None
            n += y - x
        return n

    steady_n = count(t_steady, t_down)
    steady = steady_n / (t_down - t_steady)
    buckets = []
    start = int(-(t_up - t_steady) // 1)
    for s in range(start, int(t_end - t_up) + 1):
        a, b = t_up + s, t_up + s + 1
        rs = [r for r in recs if a <= r.t < b]
        if a < t_steady:
            continue
        mid = (a + b) / 2  # the one bucket that straddles the start of the outage goes by its middle
        phase = "before" if mid < t_down else ("during" if mid < t_up else "after")
        buckets.append({
            "s": s, "phase": phase, "requests": len(rs),
            "retries": sum(1 for r in rs if r.header("Retry-Attempt") is not None),
            "kib": round(sum(r.body_size for r in rs) / 1024, 1),
            "agents": {f"a{i}": sum(1 for r in rs if agent_of(r) == f"a{i}") for i in range(args.agents)},
            "not_2xx": sum(1 for r in rs if not 200 <= r.status < 300),
            "samples": delivered(a, b),
        })
    w5, w30 = min(5.0, t_end - t_up), min(30.0, t_end - t_up)  # a watch shorter than 30 s: what there is
    first5, first30 = count(t_up, t_up + w5) / w5, count(t_up, t_up + w30) / w30
    peak = max((b for b in buckets if b["phase"] == "after"), key=lambda b: b["requests"], default=None)
    after = [b["requests"] for b in buckets if b["phase"] == "after"]
    peak10 = max((sum(after[i:i + 10]) / 10 for i in range(max(1, len(after) - 9))), default=0.0)
    return {
        "peak10_rate": round(peak10, 3), "peak10_ratio": round(peak10 / steady, 2) if steady else None,
        "during_rate": round(count(t_down, t_up) / (t_up - t_down), 3),
        "steady_requests": steady_n, "steady_rate": round(steady, 3),
        "steady_samples_per_s": round((delivered(t_steady, t_down) or 0) / (t_down - t_steady)),
        "drain_samples_per_s": round((delivered(t_up, t_end) or 0) / (t_end - t_up)),
        "steady_kib_per_s": round(sum(r.body_size for r in recs if t_steady <= r.t < t_down) / 1024
                                  / (t_down - t_steady), 1),
        "during_requests": count(t_down, t_up),
        "first5_rate": round(first5, 3), "first30_rate": round(first30, 3),
        "first5_ratio": round(first5 / steady, 2) if steady else None,
        "first30_ratio": round(first30 / steady, 2) if steady else None,
        "peak_after": peak and {"s": peak["s"], "requests": peak["requests"]},
        "buckets": buckets,
    }


def verify(prom_url: str, targets: list[list[Any]], failing: dict[int, int], args: argparse.Namespace,
           t_start_wall: float, httpx: Any) -> dict[str, Any]:
    """Every series of every target: one sample per valued scrape, the served value, in scrape order.

    A scrape the agent itself gave up on (it recorded ``up`` 0 for it: a timeout on a busy
    machine) has no sample to deliver; it is counted apart, not as a gap.
    """
    window = int(time.time() - t_start_wall + 60)
    at = time.time() + 1
    problems: list[str] = []
    samples = expected = failed_scrapes = 0
    for i, ts in enumerate(targets):
        res = prom_query(prom_url, f'{METRIC}{{agent="a{i}"}}[{window}s]', at, httpx)
        got: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for r in res:
            got[(r["metric"]["instance"], r["metric"]["series"])] = [(float(t), float(v)) for t, v in r["values"]]
        ups: dict[str, list[tuple[float, float]]] = {}
        for r in prom_query(prom_url, f'up{{agent="a{i}"}}[{window}s]', at, httpx):
            ups[r["metric"]["instance"]] = [(float(t), float(v)) for t, v in r["values"]]
        for t in ts:
            up = ups.get(t.address, [])
            up_ts = [x for x, _ in up]
            scrapes = []
            for r in list(t.requests):  # a snapshot: a late scrape may still append
                if r.version >= failing[id(t)]:
                    continue
                k = bisect.bisect_right(up_ts, r.time) - 1  # the scrape started just before its request
                if k >= 0 and r.time - up_ts[k] < args.interval and up[k][1] == 0.0:
                    failed_scrapes += 1
                    continue
                scrapes.append(r)
            want = [float(r.version) for r in scrapes]
            expected += len(want) * args.series
            for k in range(args.series):
                pts = got.get((t.address, str(k)), [])
                samples += len(pts)
                if [v for _, v in pts] != want:
                    missing = len(set(want) - {v for _, v in pts})
                    problems.append(f"a{i} {t.address} series {k}: {len(pts)} samples, {len(want)} scrapes, "
                                    f"{missing} scraped values missing")
                elif any(b[0] <= a[0] for a, b in zip(pts, pts[1:], strict=False)):
                    problems.append(f"a{i} {t.address} series {k}: timestamps not increasing")
                elif any(abs(r.time - ts_) > args.interval for (ts_, _), r in zip(pts, scrapes, strict=True)):
                    problems.append(f"a{i} {t.address} series {k}: a sample's timestamp is not its scrape's")
    return {"series": args.agents * args.targets * args.series, "samples": samples, "expected": expected,
            "failed_scrapes": failed_scrapes, "problems": problems[:20], "problem_count": len(problems)}


def prom_query(prom_url: str, expr: str, at: float, httpx: Any) -> list[dict]:
    r = httpx.get(prom_url + "/api/v1/query", params={"query": expr, "time": str(at)}, timeout=60)
    r.raise_for_status()
    return r.json()["data"]["result"]


def write_errors(prom_url: str, httpx: Any) -> dict[str, float]:
    """What Prometheus refused or rejected, from its own /metrics."""
    text = httpx.get(prom_url + "/metrics", timeout=10).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/write"' in line:
            out["http_" + re.search(r'code="(\d+)"', line).group(1)] = float(line.rsplit(" ", 1)[1])
        for name in ("prometheus_tsdb_out_of_order_samples_total", "prometheus_tsdb_out_of_bound_samples_total",
                     "prometheus_tsdb_too_old_samples_total"):
            if line.startswith(name):
                key = name.removeprefix("prometheus_tsdb_").removesuffix("_total")
                out[key] = out.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


# ---------------------------------------------------------------- the report


def report(out: dict[str, Any]) -> str:
    a, r, d, c = out["args"], out["rates"], out["drain"], out["check"]
    sps = a["agents"] * a["targets"] * (a["series"] + 5) / a["interval"]
    lines = [
        f"## Outage ({NAMES[out['kind']]}): {a['agents']} agents x {a['targets']} targets x {a['series']} series every "
        f"{a['interval']:g} s (~{sps:,.0f} samples/s with the scrape series); backend "
        f"{'refused' if a['fault'] == 'refuse' else 'answering 503'} {a['outage']:g} s",
        "",
        f"queue_config: {', '.join(a['queue']) or 'Alloy defaults'}",
        "",
        "| figure | value |",
        "|---|---|",
        f"| steady request rate ({a['steady']:g} s window) | {r['steady_rate']:.2f}/s, "
        f"{r['steady_kib_per_s']:.0f} KiB/s, {r['steady_samples_per_s']:,} samples/s delivered |",
        f"| samples/s delivered from recovery to the end of the watch | {r['drain_samples_per_s']:,} |",
        f"| requests seen during the outage | {r['during_requests']}"
        f"{' (connections refused before HTTP)' if a['fault'] == 'refuse' else ''} |",
        f"| peak 10 s window after recovery | {r['peak10_rate']:.2f}/s = **{r['peak10_ratio']}x** steady |",
        f"| requests per second during the outage | {r['during_rate']:.2f} |",
        f"| first 5 s after recovery | {r['first5_rate']:.2f}/s = **{r['first5_ratio']}x** steady |",
        f"| first 30 s after recovery | {r['first30_rate']:.2f}/s = **{r['first30_ratio']}x** steady |",
        f"| peak second after recovery | {r['peak_after']['requests'] if r['peak_after'] else '-'} requests "
        f"at +{r['peak_after']['s'] if r['peak_after'] else '-'} s |",
        f"| queue caught up (lag back to steady + 1 interval), per agent | "
        f"{', '.join('-' if x is None else f'{x:g} s' for x in d['caught_up_s'])} |",
        f"| rate controller left recovery, per agent | "
        f"{', '.join('-' if x is None else f'{x:.1f} s' for x in d['rate_control_ended_s'])} |",
        f"| most shards after recovery, per agent | {', '.join(str(x) for x in d['max_shards_after'])} |",
        f"| samples checked in Prometheus | {c['samples']:,} of {c['expected']:,} expected, "
        f"{c['series']:,} series ({c['failed_scrapes']} scrapes the agents gave up on: up 0, no sample) |",
        f"| series with a gap, a wrong value or out of order | {c['problem_count']} |",
        f"| Prometheus rejections | {fmt_errors(out['prometheus'])} |",
        "| agents: retried / failed / dropped samples | "
        + "; ".join(f"{x['samples_retried']:,} / {x['samples_failed']} / {x['samples_dropped'] or 0}"
                    for x in out["agents"]) + " |",
        "",
        "Requests per second at the proxy (t relative to recovery; runs of equal rows folded):",
        "",
        "| t (s) | phase | requests | " + " | ".join(f"a{i}" for i in range(a["agents"]))
        + " | retries | KiB | not 2xx | samples delivered |",
        "|---|---|---|" + "---|" * a["agents"] + "---|---|---|---|",
    ]
    zeros = " | ".join("0" for _ in range(a["agents"]))
    buckets = r["buckets"]
    i = 0
    while i < len(buckets):
        b = buckets[i]
        j = i
        while (b["requests"] == 0 and j + 1 < len(buckets) and buckets[j + 1]["requests"] == 0
               and buckets[j + 1]["phase"] == b["phase"]):
            j += 1
        if j > i:  # a run of empty seconds, folded
            lines.append(f"| {b['s']}..{buckets[j]['s']} | {b['phase']} | 0 each | {zeros} | 0 | 0 | 0 | 0 each |")
        else:
            per = " | ".join(str(v) for v in b["agents"].values())
            lines.append(f"| {b['s']} | {b['phase']} | {b['requests']} | {per} | {b['retries']} | "
                         f"{b['kib']:g} | {b['not_2xx']} | {'-' if b['samples'] is None else b['samples']} |")
        i = j + 1
    if c["problems"]:
        lines += ["", "First problems:", *(f"- {p}" for p in c["problems"])]
    return "\n".join(lines)


def summary(outs: list[dict[str, Any]]) -> str:
    """Issue 10's table: the same scenario for each kind of agent, side by side."""
    a = outs[0]["args"]
    head = "| | " + " | ".join(NAMES[o["kind"]] for o in outs) + " |"
    rows = [
        f"### {a['agents']} agents, backend {'refused' if a['fault'] == 'refuse' else 'answering 503'} "
        f"{a['outage']:g} s, {a['targets']} targets x {a['series']} series every {a['interval']:g} s",
        "", head, "|---|" + "---|" * len(outs),
        "| steady requests per second | " + " | ".join(f"{o['rates']['steady_rate']:.2f}" for o in outs) + " |",
        "| peak request rate in a 10 s window after recovery / steady | "
        + " | ".join(f"{o['rates']['peak10_ratio']}x" for o in outs) + " |",
        "| peak second after recovery / steady | " + " | ".join(
            f"{o['rates']['peak_after']['requests'] / o['rates']['steady_rate']:.1f}x"
            if o["rates"]["peak_after"] and o["rates"]["steady_rate"] else "-" for o in outs) + " |",
        f"| requests per second during the outage ({a['agents']} agents) | "
        + " | ".join(f"{o['rates']['during_rate']:.2f}" for o in outs) + " |",
        "| samples lost / out-of-order rejections | " + " | ".join(
            f"{max(0, o['check']['expected'] - o['check']['samples']):,} / "
            f"{o['prometheus'].get('out_of_order_samples', 0):g}" for o in outs) + " |",
        "| series with a gap, a wrong value or out of order | "
        + " | ".join(str(o["check"]["problem_count"]) for o in outs) + " |",
        "| caught up after recovery, per agent (Shoal's lag; peers not watched) | " + " | ".join(
            ", ".join("-" if x is None else f"{x:g} s" for x in o["drain"]["caught_up_s"]) or "-" for o in outs)
        + " |",
        "| run (UTC), load average at start / recovery / end | " + " | ".join(
            f"{o['began']}-{o['ended']}, {o['load_began']:g} / {o['load_at_recovery']:g} / {o['load_ended']:g}"
            for o in outs) + " |",
    ]
    return "\n".join(rows)


def fmt_errors(errs: dict[str, float]) -> str:
    bad = {k: v for k, v in errs.items() if not k.startswith("http_2") and v}
    return "none" if not bad else ", ".join(f"{k} {v:g}" for k, v in sorted(bad.items()))


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if VENV_PY.exists() and Path(sys.prefix).resolve() != VENV_PY.parent.parent.resolve():
        os.execv(str(VENV_PY), [str(VENV_PY), __file__, *(sys.argv[1:] if argv is None else argv)])
    sys.path.insert(0, str(ROOT))

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="shoal-outage-"))
    work.mkdir(parents=True, exist_ok=True)
    outs = []
    configs = [(n, o) for n in args.agent_counts for o in args.outages]
    try:
        for n, outage in configs:
            conf = argparse.Namespace(**{**vars(args), "agents": n, "outage": outage})
            for kind in args.kinds:
                d = work / f"{n}x{outage:g}" / kind if len(configs) > 1 else work / kind
                d.mkdir(parents=True, exist_ok=True)
                outs.append(run(conf, d, kind))
                print(report(outs[-1]), "\n", flush=True)
                if args.json:  # after every run, so a later failure keeps what was measured
                    args.json.write_text(json.dumps(outs, indent=1, default=str))
    except KeyboardInterrupt:
        say("interrupted; everything started was stopped")
        return 130
    except (RuntimeError, TimeoutError) as exc:
        say(f"setup failed: {exc} (work folder kept: {work})")
        return 2
    if not args.keep and args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    for n, outage in configs:
        print(summary([o for o in outs if o["args"]["agents"] == n and o["args"]["outage"] == outage]), "\n")
    if args.json:
        args.json.write_text(json.dumps(outs, indent=1, default=str))
    shoal = [o for o in outs if o["kind"] == "shoal"]  # the promise is Shoal's; peers are measured
    ok = all(o["check"]["problem_count"] == 0 and o["check"]["samples"] == o["check"]["expected"]
             and fmt_errors(o["prometheus"]) == "none" and o["drain"]["flushed"] for o in shoal)
    say("Shoal: every sample arrived, in order, nothing rejected" if ok else "FAILED: see the tables")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

