"""Real processes for tests: Prometheus, node exporter, VictoriaMetrics, the agent.

Each starts on a free loopback port in a temporary folder, is waited on until
it answers, and is killed (with its whole process group) when the test ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code < 500:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


@dataclass
class Proc:
    popen: subprocess.Popen
    url: str
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout)
        return self.popen.returncode

    def signal_group(self, sig: int) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def spawn(args: list[str], workdir: Path, name: str, env: dict[str, str] | None = None) -> Proc:
    log = workdir / f"{name}.log"
    with open(log, "ab") as fh:  # the child keeps its own copy of the descriptor
        popen = subprocess.Popen(
            args, stdout=fh, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    return Proc(popen, "", log)


@contextlib.contextmanager
def prometheus(
    workdir: Path, extra: list[str] | None = None, host: str = "127.0.0.1"
) -> Iterator[Proc]:
    """A real Prometheus accepting remote write, with an empty scrape config.

    ``host``: another address to listen on, e.g. one reachable from network namespaces.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port(host)
    cfg = workdir / "prometheus.yml"
    cfg.write_text("global:\n  scrape_interval: 1h\n")
    p = spawn(
        [
            "prometheus",
            f"--config.file={cfg}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address={host}:{port}",
            "--web.enable-remote-write-receiver",
            "--storage.tsdb.retention.time=1d",
            *(extra or []),
        ],
        workdir,
        "prometheus",
    )
    p.url = f"http://{host}:{port}"
    try:
        wait_http(p.url + "/-/ready", proc=p.popen)
        yield p
    finally:
        p.stop()


@contextlib.contextmanager
def prometheus_agent(workdir: Path, config: str) -> Iterator[Proc]:
    """`prometheus --enable-feature=agent`, the peer Shoal stands in for, running ``config``.

    The config lives in ``workdir / "prometheus-agent.yml"``: rewrite it and
    POST ``/-/reload`` to change it (the lifecycle API is enabled).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cfg = workdir / "prometheus-agent.yml"
    cfg.write_text(config)
    p = spawn(
        [
            "prometheus",
            "--enable-feature=agent",
            f"--config.file={cfg}",
            f"--storage.agent.path={workdir / 'agent-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        workdir,
        "prometheus-agent",
    )
    p.url = f"http://127.0.0.1:{port}"
    try:
        wait_http(p.url + "/-/ready", proc=p.popen)
        yield p
    finally:
        p.stop()


@contextlib.contextmanager
def node_exporter(workdir: Path) -> Iterator[Proc]:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    p = spawn(
        ["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{port}"], workdir, "node_exporter"
    )
    p.url = f"http://127.0.0.1:{port}"
    try:
        wait_http(p.url + "/metrics", proc=p.popen)
        yield p
    finally:
        p.stop()


@contextlib.contextmanager
def victoria_metrics(workdir: Path) -> Iterator[Proc]:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    p = spawn(
        [
            "victoria-metrics",
            f"-storageDataPath={workdir / 'vmdata'}",
            f"-httpListenAddr=127.0.0.1:{port}",
            "-search.latencyOffset=0s",
        ],
        workdir,
        "victoria-metrics",
    )
    p.url = f"http://127.0.0.1:{port}"
    try:
        wait_http(p.url + "/health", proc=p.popen)
        yield p
    finally:
        p.stop()


def agent(workdir: Path, config: Path, *flags: str, port: int | None = None) -> Proc:
    """Start `shoal run` as a real process; the caller stops it."""
    port = port or free_port()
    p = spawn(
        [
            sys.executable, "-m", "agent", "run",
            f"--server.http.listen-addr=127.0.0.1:{port}",
            f"--storage.path={workdir / 'data'}",
            *flags,
            str(config),
        ],
        workdir,
        "agent",
    )
    p.url = f"http://127.0.0.1:{port}"
    return p


def query(prom_url: str, expr: str, at: float | None = None) -> list[dict]:
    """An instant query against a Prometheus-compatible API; returns the result vector."""
    params: dict[str, str] = {"query": expr}
    if at is not None:
        params["time"] = str(at)
    r = httpx.get(prom_url + "/api/v1/query", params=params, timeout=10)
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def eventually(fn, timeout: float = 30.0, interval: float = 0.25):  # noqa: ANN001, ANN201
    """Retry ``fn`` until it returns a truthy value (returned) or raises no AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            out = fn()
            if out:
                return out
            err: Exception = AssertionError(f"{fn} returned {out!r}")
        except (AssertionError, httpx.HTTPError) as exc:
            err = exc
        if time.monotonic() > deadline:
            raise err
        time.sleep(interval)


def stop_all(procs: Iterable[Proc], sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Signal every process first, then wait for each: agents stopping gracefully hand their
    share over for a few seconds (agent/cluster/service.py ``hand_over``), in parallel here."""
    procs = list(procs)
    for p in procs:
        p.signal_group(sig)
    for p in procs:
        p.stop(sig, timeout)
