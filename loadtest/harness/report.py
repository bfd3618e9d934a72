"""The run's table in markdown: printed, saved under loadtest/results/, and copied
into docs/performance.md between two markers so the page always holds the last
full run without hand editing.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .agents import Agent
from .result import RunResult

BEGIN = "<!-- latest-run:begin (written by loadtest/run) -->"
END = "<!-- latest-run:end -->"
MiB = 1024 * 1024


@dataclass
class Meta:
    date: str
    stamp: str
    machine: str
    versions: dict[str, str] = field(default_factory=dict)
    options: str = ""
    elapsed_s: float = 0.0
    interrupted: bool = False

    @classmethod
    def collect(
        cls,
        agents: Sequence[Agent],
        args: argparse.Namespace,
        started: float,
        ended: float,
        interrupted: bool,
    ) -> Meta:
        versions = {a.name: a.version() for a in agents}
        versions["nginx"] = _nginx_version()
        gz = (
            "served gzip-compressed (gzip_static) when the agent asks"
            if not args.no_gzip
            else "served uncompressed"
        )
        sink = (
            "nginx answering 204 (costs almost nothing)"
            if args.sink == "nginx"
            else "VictoriaMetrics (counts what arrived)"
        )
        options = (
            f"{args.series:,} series per target ({args.families} distinct payloads x 10 "
            f"variants, values change every scrape), payloads {gz}; sink: {sink}; agent on CPU "
            f"{args.agent_cpu}, targets + sink + harness on CPU {args.load_cpu}"
            + ("; --quick windows" if args.quick else "")
        )
        return cls(
            date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
            stamp=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started)),
            machine=machine(),
            versions=versions,
            options=options,
            elapsed_s=ended - started,
            interrupted=interrupted,
        )


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    osname = platform.system()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                osname = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} cores, {mem / 2**30:.1f} GiB RAM, "
        f"{osname}, Linux {platform.release()}"
    )


def _nginx_version() -> str:
    try:
        out = subprocess.run(["nginx", "-v"], capture_output=True, text=True, timeout=10)
        return (out.stderr or out.stdout).strip().replace("nginx version: ", "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def _k(v: float | None) -> str:
    return "-" if v is None else f"{v / 1000:,.1f}"


def _f(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def _ms(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "-"
    return f"{seconds * 1000:,.1f}" if seconds < 10 else f"{seconds * 1000:,.0f}"


def _bound_ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return "> 10 s" if math.isinf(seconds) else f"≤ {seconds * 1000:g}"


def lag_cell(r: RunResult) -> str:
    """p99 of the agent's own lag histogram over the window, and the highest bucket reached (ms)."""
    if r.lag_p99_s is None:
        return "-"
    return f"{_ms(r.lag_p99_s)} ({_bound_ms(r.lag_max_bucket_s)})"


def probe_cell(r: RunResult) -> str:
    if r.probe_p99_s is None:
        return "-" if not r.probe_failed else f"all {r.probe_failed} failed"
    return _ms(r.probe_p99_s) + (f" ({r.probe_failed} failed)" if r.probe_failed else "")


def one_line(r: RunResult) -> str:
    if not r.ok:
        return f"{r.workload} {r.agent}: {r.status} {r.note}"
    return (
        f"{r.workload} {r.agent} x{r.targets}: scraped {_k(r.scraped_rate)}k/s sent {_k(r.sent_rate)}k/s "
        f"cpu {r.cores:.2f} cores = {_f(r.cpu_per_million)} s/M, rss {r.rss_steady / MiB:.0f} MiB "
        f"({_f(r.bytes_per_series, 0)} B/series), peak {r.rss_peak / MiB:.0f} MiB, "
        f"keeps up: {'yes' if r.keeps_up else 'NO'} (scrapes {r.scrape_ratio:.0%}) {r.backlog}; "
        f"load {r.load_cores:.0%}, other processes {r.other_cores:.0%} of a core; "
        f"loop lag p99 {lag_cell(r)} ms, {r.probe_path} p99 {probe_cell(r)} ms "
        f"(p50 {_ms(r.probe_p50_s)}, max {_ms(r.probe_max_s)}, n={r.probe_n})"
    )


def results_table(results: Sequence[RunResult]) -> str:
    arrived = any(r.arrived is not None for r in results)
    head = [
        "workload",
        "agent",
        "targets",
        "offered k/s",
        "scraped k/s",
        "scraped k/s (own count)",
        "sent k/s (own count)",
    ]
    if arrived:
        head.append("arrived k/s (sink)")
    head += [
        "keeps up",
        "CPU cores",
        "CPU s / M samples",
        "RSS steady MiB",
        "RSS peak MiB",
        "RSS bytes / series",
        "load core",
        "other procs",
        "loop lag p99 ms (max bucket)",
        "probe p99 ms",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        row = [r.workload, r.agent, str(r.targets), _k(r.offered_rate)]
        if not r.ok:
            row += [r.status] + ["-"] * (len(head) - len(row) - 1)
        else:
            row += [_k(r.scraped_rate), _k(r.agent_scraped_rate), _k(r.sent_rate)]
            if arrived:
                row.append(_k(r.arrived_rate))
            row += [
                "yes"
                if r.keeps_up
                else f"**no** (scrapes {r.scrape_ratio:.0%}, sent {_f((r.send_ratio or 0) * 100, 0)}%)",
                _f(r.cores),
                _f(r.cpu_per_million),
                _f(r.rss_steady / MiB, 0),
                _f(r.rss_peak / MiB, 0),
                _f(r.bytes_per_series, 0),
                f"{r.load_cores:.0%}",
                f"{r.other_cores:.0%}" + (" (disturbed)" if r.disturbed else ""),
                lag_cell(r),
                probe_cell(r),
            ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def responsiveness_notes(results: Sequence[RunResult]) -> list[str]:
    """Which histogram each agent's lag column read, and what the probe column timed."""
    ok = [r for r in results if r.ok]
    if not ok:
        return []
    lag: dict[str, str] = {}
    for r in ok:
        if r.lag_metric:
            lag.setdefault(r.agent, r.lag_metric)
    agents = list(dict.fromkeys(r.agent for r in ok))
    parts = [
        f"{a}: `{lag[a]}`" + (" (how late a 100 ms timer ran)" if a == "shoal" else "")
        if a in lag
        else f"{a}: none exported"
        for a in agents
    ]
    paths = dict.fromkeys(f"{r.agent} `{r.probe_path}`" for r in ok if r.probe_path)
    probes = sorted({r.probe_n for r in ok if r.probe_path})
    answers = (
        f"{probes[0]}" if len(probes) == 1 else f"{probes[0]}-{probes[-1]}" if probes else "no"
    )
    text = (
        "Responsiveness over each window. Loop lag: the p99 of the agent's own histogram "
        "between the window's first and last /metrics read (interpolated within buckets as "
        "`histogram_quantile` does) and the highest bucket any observation reached; "
        + "; ".join(parts)
        + ". Probe: the harness GETs "
        + ", ".join(paths)
        + " on a fresh connection at a random instant in each second of the window and reports the p99 of "
        + f"{answers} answers a window; "
        "the harness shares the load core with nginx, so its figures compare agents."
    )
    return [text, ""]


def _pick(results: Sequence[RunResult], workload: str, agent: str) -> RunResult | None:
    """The comparable run: for max, the highest load the agent kept up with."""
    runs = [r for r in results if r.workload == workload and r.agent == agent and r.ok]
    if workload == "max":
        kept = [r for r in runs if r.keeps_up]
        return max(kept, key=lambda r: r.targets) if kept else None
    return runs[0] if runs else None


def ratios_table(results: Sequence[RunResult]) -> str:
    lines = [
        "| workload | Shoal / peer | CPU s per M samples | RSS bytes per series | "
        "highest load kept up | caveat |",
        "|---|---|---|---|---|---|",
    ]
    for wl in ("seed", "heavy"):
        shoal = _pick(results, wl, "shoal")
        for peer in ("vmagent", "prometheus-agent"):
            other = _pick(results, wl, peer)
            if other is None:
                continue
            if shoal is None:
                status = next(
                    (r.status for r in results if r.agent == "shoal" and r.workload == wl),
                    "not run",
                )
                lines.append(f"| {wl} | {peer} | {status} | {status} | - | - |")
                continue
            cpu = _ratio(shoal.cpu_per_million, other.cpu_per_million)
            mem = _ratio(shoal.bytes_per_series, other.bytes_per_series)
            caveats = [f"{r.agent} did not keep up" for r in (shoal, other) if not r.keeps_up]
            caveats += [f"{r.agent}'s window disturbed" for r in (shoal, other) if r.disturbed]
            lines.append(f"| {wl} | {peer} | {cpu} | {mem} | - | {'; '.join(caveats)} |")
    for peer in ("vmagent", "prometheus-agent"):
        a, b = _pick(results, "max", "shoal"), _pick(results, "max", peer)
        if a is not None and b is not None:
            lines.append(f"| max | {peer} | - | - | {_ratio(a.offered_rate, b.offered_rate)} | |")
    return "\n".join(lines)


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0%}"


def _skipped_cell(r: RunResult) -> str:
    if not r.skipped:
        return "0" if r.agent == "shoal" else "-"
    return ", ".join(f"{n:,.0f} {reason}" for reason, n in sorted(r.skipped.items()))


def max_table(results: Sequence[RunResult]) -> str:
    """Per agent: the highest load kept up, and how the first load not kept up was handled.

    At that load a graceful agent scrapes what it can (skipped ticks say what it
    left out) and sends what it scraped (the backlog does not grow); a collapsing
    one scrapes everything and sends a share, growing its backlog every second.
    """
    runs = [r for r in results if r.workload == "max"]
    if not runs:
        return ""
    lines = [
        "| agent | highest load kept up (k samples/s) | first load not kept up (k/s) | "
        "scraped there (of offered) | sent there k/s (of offered) | skipped ticks there | "
        "backlog growth there (k samples/s) | CPU cores there | CPU s / M at the highest kept up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for agent in dict.fromkeys(r.agent for r in runs):
        mine = [r for r in runs if r.agent == agent]
        if all(not r.ok for r in mine):
            lines.append(f"| {agent} | {mine[0].status} | - | - | - | - | - | - | - |")
            continue
        kept = [r for r in mine if r.ok and r.keeps_up]
        lost = [r for r in mine if r.ok and not r.keeps_up]
        best = max(kept, key=lambda r: r.targets) if kept else None
        # The first failure above the best pass (or the lowest failure if none passed).
        above = [r for r in lost if best is None or r.targets > best.targets]
        first = min(above, key=lambda r: r.targets) if above else None
        there = (
            [
                _k(first.offered_rate),
                f"{_k(first.scraped_rate)}k/s ({_pct(first.scrape_ratio)})",
                f"{_k(first.sent_rate if first.arrived is None else first.arrived_rate)} "
                f"({_pct(first.sent_share)})",
                _skipped_cell(first),
                _f(None if first.backlog_growth is None else first.backlog_growth / 1000, 1),
                _f(first.cores),
            ]
            if first
            else ["none failed (ladder or step budget ended)", "-", "-", "-", "-", "-"]
        )
        lines.append(
            "| "
            + " | ".join(
                [
                    agent,
                    _k(best.offered_rate) if best else "none tried passed",
                    *there,
                    _f(best.cpu_per_million) if best else "-",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def render(results: Sequence[RunResult], meta: Meta, configs: dict[str, str]) -> str:
    out = [
        f"### Run of {meta.date}" + (" (interrupted)" if meta.interrupted else ""),
        "",
        f"- Machine: {meta.machine}",
        "- Versions: " + "; ".join(meta.versions.values()),
        f"- Workload: {meta.options}",
        f"- Whole run: {meta.elapsed_s / 60:.1f} minutes",
        "",
        results_table(results),
        "",
        *responsiveness_notes(results),
        "Shoal's ratio to each peer (lower is better; the targets are at most 2x vmagent):",
        "",
        ratios_table(results),
    ]
    mt = max_table(results)
    if mt:
        out += [
            "",
            "Highest load sustained on one core (max workload, 1 s interval, more targets per step):",
            "",
            mt,
        ]
    notes = [f"- {r.workload} {r.agent}: {r.note}" for r in results if r.note]
    if notes:
        out += ["", "Notes:", "", *dict.fromkeys(notes)]
    return "\n".join(out) + "\n"


def write_result(directory: Path, text: str, configs: dict[str, str], meta: Meta) -> Path:
    """``directory/<stamp>.md``, and the seed configs of every agent in ``directory/configs/``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{meta.stamp}.md"
    path.write_text(f"# Load test {meta.stamp}\n\n" + text)
    if configs:
        cdir = directory / "configs"
        cdir.mkdir(exist_ok=True)
        for name, body in configs.items():
            (cdir / f"seed-{name}").write_text(body)
    return path


def update_docs(doc: Path, text: str, result_path: Path) -> None:
    """Replace the text between the markers of docs/performance.md (appending them if absent)."""
    body = doc.read_text() if doc.exists() else "# Performance\n"
    try:
        rel = result_path.resolve().relative_to(doc.resolve().parents[1])
    except ValueError:
        rel = result_path
    block = f"{BEGIN}\n{text}\nSaved as `{rel}`.\n{END}"
    if BEGIN in body and END in body:
        head, rest = body.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        body = head + block + tail
    else:
        body = body.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(body)
