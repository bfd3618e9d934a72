"""Child processes of the harness: pinned to a core, in their own process group,
and all killed when the harness ends, whether it finishes, fails or gets Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

_LIVE: list[Proc] = []


@dataclass
class Proc:
    popen: subprocess.Popen
    name: str
    log: Path
    url: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the whole group, SIGKILL it if it lingers."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout)
        # Children that outlived their leader still carry the group id.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        if self in _LIVE:
            _LIVE.remove(self)

    def log_tail(self, lines: int = 20) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def spawn(
    args: list[str],
    workdir: Path,
    name: str,
    cpu: int | None = None,
    env: dict[str, str] | None = None,
) -> Proc:
    """Start ``args`` logging to ``workdir/name.log``.

    With ``cpu``, the process is pinned there (taskset) and, when the harness
    may, given a higher priority (nice -10) so that other work on a shared
    machine disturbs the measured processes as little as possible.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    if cpu is not None:
        args = ["taskset", "-c", str(cpu), *args]
        if os.geteuid() == 0:
            args = ["nice", "-n", "-10", *args]
    with open(log, "ab") as fh:
        popen = subprocess.Popen(
            args,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    p = Proc(popen, name, log)
    _LIVE.append(p)
    return p


def stop_all() -> None:
    for p in list(reversed(_LIVE)):
        p.stop(timeout=5)


def wait_http(url: str, proc: Proc, timeout: float = 60.0) -> None:
    """Wait until ``url`` answers below 500; fail early if the process died."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(
                f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}"
            )
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(
        f"{proc.name}: {url} did not answer within {timeout}s ({last})\n{proc.log_tail()}"
    )
