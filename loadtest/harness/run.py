"""The benchmark run: targets and sink on one core, each agent in turn on the other.

Agents run one after another on the same targets, interval and sink, so the
machine's other load is the same for each; the harness itself (a sampling
thread and a few HTTP reads per window) sits with nginx on the load core.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import resource
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import nginx, report
from .agents import AGENTS, Agent, Job
from .measure import (
    Sampler,
    fetch_metrics,
    fetch_text,
    machine_busy_seconds,
    parse_metrics,
    self_cpu_seconds,
)
from .proc import Proc, spawn, stop_all, wait_http
from .responsiveness import LoopLag, Prober, ProbeStats, loop_lag
from .result import RunResult
from .targets import PayloadSet, write_payloads

ROOT = Path(__file__).resolve().parents[2]
# Max workload: offered load in thousands of samples/s, reached by adding targets at 1 s.
# The coarse rungs are climbed (or descended) until a passing and a failing one bracket
# the agent; the fine rungs between them are then bisected, so the highest load kept up
# is known to 25k/s up to 650k and 50k/s up to 1.2M.
LADDER_K = (50, 100, 150, 200, 300, 450, 650, 900, 1200, 1600, 2000)
FINE_K = tuple(range(75, 650, 25)) + tuple(range(700, 1200, 50))
SKIPPED = "shoal_scrape_skipped_total"  # agent/scrape/loop.py: late, overrun or backpressure ticks
SHARE = "shoal_remote_write_admission_share"  # agent/remote/admission.py: below 1 while shedding
_SKIPPED_LINE = re.compile(r'^shoal_scrape_skipped_total\{[^}]*reason="([a-z_]+)"[^}]*\} (\S+)', re.M)


def next_rung(
    rungs: Sequence[int], coarse: Sequence[int], start: int, passed: int | None, failed: int | None
) -> int | None:
    """The next load to try (a value of ``rungs``), or None once the bracket is as tight as it gets.

    Without a failure yet: the first coarse rung above the highest pass (``start`` when
    nothing was run). Without a pass yet: the first coarse rung below the lowest failure.
    With both: the middle rung strictly between them.
    """
    if passed is None and failed is None:
        return start
    if failed is None:
        return next((r for r in coarse if r > passed), None)  # type: ignore[operator]
    if passed is None:
        return next((r for r in reversed(coarse) if r < failed), None)
    between = [r for r in rungs if passed < r < failed]
    return between[len(between) // 2] if between else None


@dataclass
class Workload:
    name: str
    targets: int
    interval_s: float
    warmup_s: float
    measure_s: float


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Bench:
    """Holds the long-lived parts (payloads, sink) across workloads and agents."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.payloads: PayloadSet | None = None
        self.sink: Proc | None = None
        self.sink_url = ""
        self.sink_metrics = ""  # VictoriaMetrics /metrics, in correctness mode
        self.targets_proc: Proc | None = None
        self.targets_key: tuple[int, float] | None = None
        self.target_port = 0
        self.status_url = ""
        self.saved_configs: dict[str, str] = {}

    # -- load side -------------------------------------------------------

    def prepare(self, max_targets: int) -> None:
        t = time.monotonic()
        self.payloads = write_payloads(
            self.workdir / "payloads",
            series=self.args.series,
            families=min(self.args.families, max_targets),
            compress=not self.args.no_gzip,
        )
        log(
            f"payloads: {self.payloads.families} families x {self.payloads.variants} variants "
            f"x {self.payloads.series} series in {time.monotonic() - t:.1f}s"
        )
        self.target_port = free_port(nginx.target_addresses(1)[0])
        self.start_sink()

    def start_sink(self) -> None:
        cpu = self.args.load_cpu
        if self.args.sink == "vm":
            port = free_port()
            p = spawn(
                [
                    "victoria-metrics",
                    f"-storageDataPath={self.workdir / 'vmdata'}",
                    f"-httpListenAddr=127.0.0.1:{port}",
                    "-loggerLevel=WARN",
                ],
                self.workdir,
                "victoria-metrics",
                cpu=cpu,
            )
            p.url = f"http://127.0.0.1:{port}"
            wait_http(p.url + "/health", p)
            self.sink_metrics = p.url + "/metrics"
        else:
            port = free_port()
            p = nginx.start(
                self.workdir / "sink",
                nginx.sink_conf(self.workdir / "sink", port),
                "nginx-sink",
                cpu=cpu,
            )
            p.url = f"http://127.0.0.1:{port}"
            wait_http(p.url + "/status", p)
        self.sink = p
        self.sink_url = p.url + "/api/v1/write"

    def ensure_targets(self, count: int, interval_s: float) -> list[str]:
        """Serve ``count`` targets whose values move once per ``interval_s``."""
        assert self.payloads is not None
        key = (count, 10.0 if interval_s >= 10 else 1.0)
        addrs = nginx.target_addresses(count)
        if self.targets_key != key or self.targets_proc is None or not self.targets_proc.alive():
            if self.targets_proc is not None:
                self.targets_proc.stop()
            prefix = self.workdir / "targets"
            status_port = free_port()
            text = nginx.targets_conf(
                prefix, self.payloads, addrs, self.target_port, interval_s, status_port
            )
            self.targets_proc = nginx.start(prefix, text, "nginx-targets", cpu=self.args.load_cpu)
            self.status_url = f"http://127.0.0.1:{status_port}/status"
            wait_http(self.status_url, self.targets_proc)
            wait_http(f"http://{addrs[-1]}:{self.target_port}/metrics", self.targets_proc)
            self.targets_key = key
        return [f"{a}:{self.target_port}" for a in addrs]

    def sink_count(self) -> float | None:
        if not self.sink_metrics:
            return None
        return fetch_metrics(self.sink_metrics).get("vm_rows_inserted_total", 0.0)

    # -- one agent on one workload ----------------------------------------

    def run_one(self, agent: Agent, wl: Workload, targets: int) -> RunResult:
        res = RunResult(
            workload=wl.name,
            agent=agent.name,
            targets=targets,
            interval_s=wl.interval_s,
            series_per_target=self.args.series,
        )
        why = agent.unavailable()
        addrs = self.ensure_targets(targets, wl.interval_s)
        job = Job(targets=addrs, interval_s=wl.interval_s, sink_url=self.sink_url)
        rundir = self.workdir / f"{wl.name}-{targets}-{agent.name}"
        rundir.mkdir(parents=True, exist_ok=True)
        if why is not None:
            res.status = "not yet runnable"
            res.note = why
            agent.write_config(rundir, job)  # kept ready for when it runs
            self._save_config(agent, rundir, wl)
            log(f"{agent.name}: {why}")
            return res
        port = free_port()
        log(
            f"{wl.name}: {agent.name} on cpu {self.args.agent_cpu}, {targets} targets every "
            f"{wl.interval_s:g}s ({targets * self.args.series / wl.interval_s / 1000:.0f}k samples/s offered)"
        )
        proc = agent.start(rundir, job, port, cpu=self.args.agent_cpu)
        self._save_config(agent, rundir, wl)
        sampler = Sampler(proc.pid)
        load = [Sampler(p.pid) for p in (self.targets_proc, self.sink) if p is not None]
        prober = Prober(proc.url + agent.probe_path)
        try:
            wait_http(proc.url + agent.ready_path, proc, timeout=60)
        except (RuntimeError, TimeoutError) as exc:
            res.status = agent.not_ready_status
            res.note = f"did not start: {_first_error(proc.log_tail(40)) or exc}"
            proc.stop()
            log(f"  {agent.name}: {res.status}: {res.note}")
            return res
        try:
            sampler.start()
            for s in load:
                s.start()
            self._sleep(wl.warmup_s, proc)
            # The targets' request counter is read innermost, next to the
            # instants that bound the CPU window, so both span the same time.
            text0 = fetch_text(proc.url + agent.metrics_path)
            m0 = parse_metrics(text0)
            k0 = self.sink_count()
            b0, h0 = machine_busy_seconds(), self_cpu_seconds()
            r0 = nginx.stub_status(self.status_url).requests
            t0 = sampler.take().t
            for s in load:
                s.take()
            prober.start()
            self._sleep(wl.measure_s, proc)
            t1 = sampler.take().t
            probe = prober.stop()
            r1 = nginx.stub_status(self.status_url).requests
            for s in load:
                s.take()
            b1, h1 = machine_busy_seconds(), self_cpu_seconds()
            k1 = self.sink_count()
            text1 = fetch_text(proc.url + agent.metrics_path)
            m1 = parse_metrics(text1)
            sampler.stop()
            for s in load:
                s.stop()
            cpu, wall = sampler.cpu_between(t0, t1)
            res.wall_s = wall
            res.cpu_s = cpu
            res.scrapes = max(r1 - r0 - 1, 0)  # minus the status read itself
            a0, a1 = agent.scraped(m0), agent.scraped(m1)
            res.agent_scraped = None if a0 is None or a1 is None else a1 - a0
            s0, s1 = agent.sent(m0), agent.sent(m1)
            res.agent_sent = None if s0 is None or s1 is None else s1 - s0
            if k0 is not None and k1 is not None:
                res.arrived = k1 - k0
            res.rss_steady = sampler.rss_steady(t0, t1)
            res.rss_peak = sampler.rss_peak()
            load_cpu = sum(s.cpu_between(t0, t1)[0] for s in load)
            res.load_cores = load_cpu / wall
            res.other_cores = max((b1 - b0) - cpu - load_cpu - (h1 - h0), 0.0) / wall
            res.backlog = _backlog(agent.name, m1)
            if SKIPPED in m1:  # Shoal's overload rules: ticks it did not scrape, and why
                k0s, k1s = _skipped(text0), _skipped(text1)
                res.skipped = {r: n - k0s.get(r, 0.0) for r, n in k1s.items() if n - k0s.get(r, 0.0)}
                res.backlog += f", {sum(res.skipped.values()):.0f} scrapes skipped"
                if res.skipped:
                    res.backlog += " (" + ", ".join(f"{r} {n:.0f}" for r, n in sorted(res.skipped.items())) + ")"
            if SHARE in m1:
                res.admission_share = m1[SHARE]
            _responsiveness(res, loop_lag(text0, text1, agent.lag_metrics), probe)
            if res.agent_sent is None:
                res.note = "no sent-samples counter found in the agent's /metrics"
        except Exception as exc:  # noqa: BLE001 - one agent's failure must not end the run
            res.status = f"failed: {str(exc).splitlines()[0][:160]}"
            log(f"{agent.name} failed: {exc}")
        finally:
            prober.stop()
            sampler.stop()
            for s in load:
                s.stop()
            proc.stop()
        log("  " + report.one_line(res))
        return res

    def run_trusted(self, agent: Agent, wl: Workload, targets: int) -> RunResult:
        """run_one, run again (up to --retries times) while other work disturbed the window."""
        res = self.run_one(agent, wl, targets)
        for _ in range(self.args.retries):
            if not (res.ok and res.disturbed):
                break
            log(
                f"  other processes used {res.other_cores:.2f} cores during the window: running again"
            )
            res = self.run_one(agent, wl, targets)
        return res

    def _save_config(self, agent: Agent, rundir: Path, wl: Workload) -> None:
        if wl.name != "seed":
            return
        for path in rundir.iterdir():
            if path.suffix in (".alloy", ".yml"):
                self.saved_configs[agent.name + path.suffix] = path.read_text()

    @staticmethod
    def _sleep(seconds: float, proc: Proc) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(
                    f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}"
                )
            time.sleep(min(0.5, max(deadline - time.monotonic(), 0)))

    # -- the max workload ----------------------------------------------------

    def run_max(self, agent: Agent, wl: Workload, heavy: RunResult | None) -> list[RunResult]:
        """Coarse rungs until a passing and a failing one bracket the agent, then bisect the fine ones."""
        per_k = 1000 * wl.interval_s / self.args.series  # targets per 1k samples/s
        rungs = [k for k in sorted(set(LADDER_K) | set(FINE_K)) if math.ceil(k * per_k) <= self.args.max_targets]
        coarse = [k for k in LADDER_K if k in rungs]
        if not coarse:
            return []
        offered = (heavy.targets if heavy is not None else self.args.targets) / per_k
        if heavy is not None and heavy.ok and heavy.keeps_up:
            start = next((k for k in coarse if k > offered), coarse[-1])
        else:
            start = ([k for k in coarse if k < offered] or coarse[:1])[-1]
        out: list[RunResult] = []
        passed: int | None = None
        failed: int | None = None
        for _ in range(self.args.max_steps):
            k = next_rung(rungs, coarse, start, passed, failed)
            if k is None:
                break
            r = self.run_trusted(agent, wl, max(1, math.ceil(k * per_k)))
            out.append(r)
            if not r.ok:
                break
            if r.keeps_up:
                passed = k if passed is None else max(passed, k)
            else:
                failed = k if failed is None else min(failed, k)
        return out


def _responsiveness(res: RunResult, lag: LoopLag | None, probe: ProbeStats) -> None:
    if lag is not None and lag.observations > 0:
        res.lag_metric = lag.metric
        res.lag_p99_s = lag.p99
        res.lag_max_bucket_s = lag.max_bucket
        res.lag_observations = lag.observations
    res.probe_path = probe.path
    res.probe_n, res.probe_failed = probe.n, probe.failed
    if probe.n:
        res.probe_p50_s, res.probe_p99_s, res.probe_max_s = probe.p50, probe.p99, probe.max


def _first_error(text: str) -> str:
    """The line of a log most likely to say why a process would not start."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if any(
            w in ln.lower() for w in ("error", "unrecognized", "invalid", "cannot", "traceback")
        ):
            return ln[:200]
    return lines[-1][:200] if lines else ""


def _skipped(text: str) -> dict[str, float]:
    """Shoal's skipped ticks by reason, summed over its scrape components."""
    out: dict[str, float] = {}
    for reason, value in _SKIPPED_LINE.findall(text):
        out[reason] = out.get(reason, 0.0) + float(value)
    return out


def _backlog(agent: str, m: dict[str, float]) -> str:
    if agent == "vmagent" and "vmagent_remotewrite_pending_data_bytes" in m:
        return f"{m['vmagent_remotewrite_pending_data_bytes'] / 1e6:.1f} MB pending"
    if "prometheus_remote_storage_samples_pending" in m:
        return f"{m['prometheus_remote_storage_samples_pending']:.0f} samples pending"
    return ""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="loadtest/run", description=__doc__)
    p.add_argument(
        "--workload",
        default=None,
        help="comma list of seed, heavy, max (default: all three; seed,heavy with --quick)",
    )
    p.add_argument(
        "--agents",
        default="shoal,vmagent,prometheus",
        help="comma list of shoal, vmagent, prometheus",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="short windows, seed+heavy only (~2.5 minutes), for development",
    )
    p.add_argument("--duration", type=float, help="measurement window of seed and heavy, seconds")
    p.add_argument(
        "--warmup", type=float, help="seconds before measuring (default 20, 15 in max steps)"
    )
    p.add_argument(
        "--step", type=float, help="measurement window of each max-workload step, seconds"
    )
    p.add_argument(
        "--max-steps", type=int, default=6, help="ladder steps per agent in the max workload"
    )
    p.add_argument(
        "--max-targets", type=int, default=2000, help="most targets the max workload may use"
    )
    p.add_argument("--targets", type=int, default=200, help="targets in seed and heavy")
    p.add_argument("--series", type=int, default=1000, help="series per target")
    p.add_argument(
        "--families", type=int, default=20, help="distinct payloads shared by the targets"
    )
    p.add_argument(
        "--sink",
        choices=("nginx", "vm"),
        default="nginx",
        help="nginx answering 204 (free), or VictoriaMetrics counting what arrived",
    )
    p.add_argument(
        "--no-gzip", action="store_true", help="serve payloads uncompressed even if asked for gzip"
    )
    p.add_argument(
        "--retries",
        type=int,
        default=0,
        help="runs again when other processes used over 0.3 cores during a window",
    )
    p.add_argument("--agent-cpu", type=int, default=1)
    p.add_argument("--load-cpu", type=int, default=0)
    p.add_argument("--results", type=Path, default=ROOT / "loadtest" / "results")
    p.add_argument(
        "--docs",
        choices=("auto", "yes", "no"),
        default="auto",
        help="update docs/performance.md (auto: full runs only)",
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the work directory (configs, logs, data)"
    )
    return p.parse_args(argv)


def workloads(args: argparse.Namespace) -> list[Workload]:
    # Warm-ups cover more than one interval (every series created) and give
    # Prometheus's remote-write shards time to scale; --quick trades that away.
    q = args.quick
    table = {
        "seed": Workload("seed", args.targets, 10.0, 11.0 if q else 20.0, 15.0 if q else 40.0),
        "heavy": Workload("heavy", args.targets, 1.0, 6.0 if q else 20.0, 10.0 if q else 30.0),
        "max": Workload("max", 0, 1.0, 6.0 if q else 15.0, 8.0 if q else 15.0),
    }
    out = []
    for name in args.workload.split(","):
        name = name.strip()
        if name not in table:
            raise SystemExit(f"unknown workload {name!r}: choose from seed, heavy, max")
        wl = table[name]
        if args.duration and name != "max":
            wl.measure_s = args.duration
        if args.step and name == "max":
            wl.measure_s = args.step
        if args.warmup is not None:
            wl.warmup_s = args.warmup
        out.append(wl)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.workload is None:
        args.workload = "seed,heavy" if args.quick else "seed,heavy,max"
    if args.quick:
        args.max_steps = min(args.max_steps, 3)
    wls = workloads(args)
    names = [a.strip() for a in args.agents.split(",") if a.strip()]
    for n in names:
        if n not in AGENTS:
            raise SystemExit(f"unknown agent {n!r}: choose from {', '.join(AGENTS)}")
    agents = [AGENTS[n]() for n in names]

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {args.load_cpu})

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # SIGINT too: a harness started in the background inherits it ignored.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    workdir = Path(tempfile.mkdtemp(prefix="shoal-loadtest-"))
    workdir.chmod(0o755)  # nginx workers (nobody) read the payloads
    started = time.time()
    results: list[RunResult] = []
    interrupted = False
    try:
        bench = Bench(args, workdir)
        max_targets = max(
            [args.targets] + ([args.max_targets] if any(w.name == "max" for w in wls) else [])
        )
        bench.prepare(max_targets)
        for wl in wls:
            for agent in agents:
                if wl.name == "max":
                    heavy = next(
                        (r for r in results if r.workload == "heavy" and r.agent == agent.name),
                        None,
                    )
                    if agent.unavailable() is not None:
                        results.append(bench.run_one(agent, wl, args.targets))
                    else:
                        results.extend(bench.run_max(agent, wl, heavy))
                else:
                    results.append(bench.run_trusted(agent, wl, wl.targets))
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: stopping every process")
    finally:
        stop_all()
        if args.keep:
            log(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if not results:
        return 130 if interrupted else 1
    meta = report.Meta.collect(agents, args, started, time.time(), interrupted)
    text = report.render(results, meta, bench.saved_configs)
    print(text)
    path = report.write_result(args.results, text, bench.saved_configs, meta)
    log(f"wrote {path}")
    full = {w.name for w in wls} == {"seed", "heavy", "max"} and not args.quick and not interrupted
    if args.docs == "yes" or (args.docs == "auto" and full):
        report.update_docs(ROOT / "docs" / "performance.md", text, path)
        log("updated docs/performance.md")
    return 130 if interrupted else 0
