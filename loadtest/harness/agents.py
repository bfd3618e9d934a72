"""The three agents under test, each given the same targets, interval and sink.

Each agent writes its own configuration, starts pinned to one core, and says
which of its self-metrics count samples scraped and samples sent. Defaults are
left alone everywhere (queue sizes, shard counts, flush intervals): the
comparison is of what a user gets out of the box.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .proc import Proc, spawn

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Job:
    """What every agent is asked to do in one run."""

    targets: Sequence[str]  # host:port
    interval_s: float
    sink_url: str

    @property
    def timeout_s(self) -> float:
        return min(self.interval_s, 10.0)


def duration(seconds: float) -> str:
    """A Prometheus/Alloy duration string: 10s, 500ms."""
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{int(round(seconds * 1000))}ms"


def _first(metrics: dict[str, float], names: Sequence[str]) -> float | None:
    for n in names:
        if n in metrics:
            return metrics[n]
    return None


class Agent:
    """Base: subclasses fill in config, command line and metric names."""

    name = ""
    scraped_names: tuple[str, ...] = ()
    sent_names: tuple[str, ...] = ()
    ready_path = "/-/ready"
    metrics_path = "/metrics"
    probe_path = "/-/healthy"  # what the harness GETs once a second to time the answer
    # Histograms of how late the agent ran its work, first found wins (see responsiveness.py).
    lag_metrics: tuple[str, ...] = ()
    not_ready_status = "failed"  # the status of a run whose agent never became ready

    def unavailable(self) -> str | None:
        """Why this agent cannot run here, or None."""
        return None

    def version(self) -> str:
        raise NotImplementedError

    def write_config(self, workdir: Path, job: Job) -> Path:
        raise NotImplementedError

    def command(self, workdir: Path, config: Path, port: int, job: Job) -> list[str]:
        raise NotImplementedError

    def start(self, workdir: Path, job: Job, port: int, cpu: int | None) -> Proc:
        config = self.write_config(workdir, job)
        p = spawn(self.command(workdir, config, port, job), workdir, self.name, cpu=cpu)
        p.url = f"http://127.0.0.1:{port}"
        p.extra["config"] = str(config)
        return p

    def scraped(self, metrics: dict[str, float]) -> float | None:
        return _first(metrics, self.scraped_names)

    def sent(self, metrics: dict[str, float]) -> float | None:
        return _first(metrics, self.sent_names)


def _prometheus_yaml(job: Job) -> dict:
    return {
        "global": {
            "scrape_interval": duration(job.interval_s),
            "scrape_timeout": duration(job.timeout_s),
        },
        "scrape_configs": [
            {
                "job_name": "bench",
                "static_configs": [{"targets": list(job.targets)}],
            }
        ],
    }


def _dpkg_version(package: str) -> str:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


class VMAgent(Agent):
    name = "vmagent"
    # vm_promscrape_scraped_samples is a summary of samples per scrape; its _sum
    # counts every sample parsed. block_size_rows_sum counts rows packed into
    # remote-write blocks (1.79 has no per-row "delivered" counter; a backlog
    # shows in vmagent_remotewrite_pending_data_bytes, reported beside it).
    scraped_names = ("vm_promscrape_scraped_samples_sum",)
    sent_names = ("vmagent_remotewrite_block_size_rows_sum",)
    ready_path = "/health"
    probe_path = "/health"
    # 1.79 exports no Go scheduler latency; newer VictoriaMetrics/metrics versions do.
    lag_metrics = ("go_sched_latencies_seconds",)

    def version(self) -> str:
        return f"vmagent {_dpkg_version('victoria-metrics')} (Debian victoria-metrics)"

    def write_config(self, workdir: Path, job: Job) -> Path:
        path = workdir / "vmagent.yml"
        # JSON is YAML: no YAML emitter needed for a config this plain.
        path.write_text(json.dumps(_prometheus_yaml(job), indent=1))
        return path

    def command(self, workdir: Path, config: Path, port: int, job: Job) -> list[str]:
        return [
            "vmagent",
            f"-promscrape.config={config}",
            f"-remoteWrite.url={job.sink_url}",
            f"-remoteWrite.tmpDataPath={workdir / 'vmagent-data'}",
            f"-httpListenAddr=127.0.0.1:{port}",
            "-loggerLevel=WARN",
        ]


class PrometheusAgent(Agent):
    name = "prometheus-agent"
    scraped_names = ("prometheus_agent_samples_appended_total",)
    sent_names = (
        "prometheus_remote_storage_samples_total",
        "prometheus_remote_storage_succeeded_samples_total",
    )
    # The Go runtime's scheduling latency, when client_golang is told to export it.
    lag_metrics = ("go_sched_latencies_seconds",)

    def version(self) -> str:
        try:
            out = subprocess.run(
                ["prometheus", "--version"], capture_output=True, text=True, timeout=10
            )
            first = (out.stdout or out.stderr).splitlines()[0]
            return first.split(" (")[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            return "prometheus unknown"

    def write_config(self, workdir: Path, job: Job) -> Path:
        cfg = _prometheus_yaml(job)
        cfg["remote_write"] = [{"url": job.sink_url}]
        path = workdir / "prometheus.yml"
        path.write_text(json.dumps(cfg, indent=1))
        return path

    def command(self, workdir: Path, config: Path, port: int, job: Job) -> list[str]:
        return [
            "prometheus",
            "--enable-feature=agent",
            f"--config.file={config}",
            f"--storage.agent.path={workdir / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ]


def shoal_config(job: Job) -> str:
    """The Alloy-syntax configuration Shoal runs: static targets -> scrape -> remote_write."""
    targets = ",\n".join(f'    {{"__address__" = "{t}"}}' for t in job.targets)
    return f"""// Generated by loadtest/harness: {len(job.targets)} targets every {duration(job.interval_s)}.
prometheus.scrape "bench" {{
  targets = [
{targets},
  ]
  forward_to      = [prometheus.remote_write.sink.receiver]
  job_name        = "bench"
  scrape_interval = "{duration(job.interval_s)}"
  scrape_timeout  = "{duration(job.timeout_s)}"
}}

prometheus.remote_write "sink" {{
  endpoint {{
    url = "{job.sink_url}"
  }}
}}
"""


class Shoal(Agent):
    name = "shoal"
    not_ready_status = "not yet runnable"  # while its components are being built
    # Alloy's names first (what Shoal promises to keep), then Prometheus agent's.
    scraped_names = (
        "prometheus_remote_write_wal_samples_appended_total",
        "prometheus_forwarded_samples_total",
        "prometheus_agent_samples_appended_total",
        "prometheus_scrape_samples_total",
        "shoal_scrape_samples_total",
    )
    lag_metrics = ("shoal_event_loop_lag_seconds",)  # agent/runtime/looplag.py
    sent_names = (
        "prometheus_remote_storage_samples_total",
        "prometheus_remote_storage_succeeded_samples_total",
    )

    def __init__(self) -> None:
        venv = ROOT / ".venv" / "bin" / "shoal"
        self.exe = [str(venv)] if venv.exists() else [sys.executable, "-m", "agent"]

    def unavailable(self) -> str | None:
        try:
            out = subprocess.run(
                [*self.exe, "run", "--help"], capture_output=True, text=True, timeout=30, cwd=ROOT
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"`shoal run --help` failed: {exc}"
        if out.returncode != 0:
            tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or [""]
            return f"`shoal run` is not available yet ({tail[0][:120]})"
        return None

    def version(self) -> str:
        try:
            sha = subprocess.run(
                ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            sha = ""
        try:
            from importlib.metadata import version

            v = version("shoal")
        except Exception:  # noqa: BLE001 - a version string is best effort
            v = "?"
        py = ".".join(map(str, sys.version_info[:3]))
        return f"shoal {v} (git {sha or '?'}, Python {py})"

    def write_config(self, workdir: Path, job: Job) -> Path:
        path = workdir / "shoal.alloy"
        path.write_text(shoal_config(job))
        return path

    def command(self, workdir: Path, config: Path, port: int, job: Job) -> list[str]:
        # SHOAL_PROFILE=out=PATH,skip=S runs Shoal under loadtest/profile.py's sampler.
        spec = os.environ.get("SHOAL_PROFILE")
        exe = self.exe
        if spec:
            py = ROOT / ".venv" / "bin" / "python"
            exe = [
                str(py) if py.exists() else sys.executable,
                str(ROOT / "loadtest" / "profile.py"),
            ]
            exe += [f"--{k}" for k in spec.split(",") if "=" in k] + ["--"]
        return [
            *exe,
            "run",
            f"--server.http.listen-addr=127.0.0.1:{port}",
            f"--storage.path={workdir / 'shoal-data'}",
            str(config),
        ]


AGENTS: dict[str, type[Agent]] = {"shoal": Shoal, "vmagent": VMAgent, "prometheus": PrometheusAgent}
