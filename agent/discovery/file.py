"""File-based service discovery with Prometheus' ``file_sd_configs`` semantics.

Users moving from Prometheus keep their target files (written by config
management or a script) and point ``discovery.file`` at the same globs, so
the files must mean exactly what they meant to Prometheus: a JSON (``.json``)
or YAML (any other name) list of ``{targets: [...], labels: {...}}`` groups,
unknown fields refused, each target labelled ``__address__`` plus the
group's labels plus ``__meta_filepath``. A file that cannot be read or
parsed keeps its last good targets (Prometheus does the same, so a half-
written file never drops targets) and its reason is kept for health; a file
that disappears, or no longer matches a glob, takes its targets with it.

Files are re-read when their size, mtime or inode changes (checked every
``poll_interval``, cheap ``stat`` calls, no inotify dependency) and all of
them every ``refresh_interval``, as Prometheus does.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from agent.relabel import is_valid_label_name

FILEPATH_LABEL = "__meta_filepath"

Target = dict[str, str]


class FileSDError(ValueError):
    """Why one file's content is not a list of target groups."""


def _load_yaml(content: bytes) -> Any:
    """Every scalar as its text, as Go decodes YAML into string fields ("1.10", "yes").

    PyYAML is imported here, when a YAML file is first read, not with this module: it is
    ~1.5 MB of every ``shoal run`` (not a cycle). libyaml's build when PyYAML has it; its
    errors are raised as ValueError with their text.
    """
    import yaml

    try:
        return yaml.load(content, Loader=getattr(yaml, "CBaseLoader", yaml.BaseLoader))  # noqa: S506 - no tags
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from None


def parse(content: bytes, path: str) -> list[Target]:
    """The targets one file describes, or FileSDError with the reason."""
    try:
        if path.lower().endswith(".json"):
            groups = json.loads(content.decode("utf-8"))
        else:
            groups = _load_yaml(content)
    except ValueError as exc:
        raise FileSDError(f"cannot parse: {_first_line(exc)}") from None
    if groups is None or groups == "":
        return []
    if not isinstance(groups, list):
        raise FileSDError("expected a list of target groups")
    out: list[Target] = []
    for i, group in enumerate(groups):
        if not isinstance(group, dict):
            raise FileSDError(f"target group {i}: expected a mapping, got {type(group).__name__}")
        unknown = sorted(set(group) - {"targets", "labels"})
        if unknown:
            raise FileSDError(f"target group {i}: unknown field {unknown[0]!r}")
        labels = group.get("labels") or {}  # an empty YAML value reads as ""
        if not isinstance(labels, dict):
            raise FileSDError(f"target group {i}: labels must be a mapping")
        base: Target = {}
        for name, value in labels.items():
            if not isinstance(name, str) or not is_valid_label_name(name):
                raise FileSDError(f"target group {i}: {name!r} is not a valid label name")
            if not isinstance(value, str):
                raise FileSDError(f"target group {i}: label {name!r} must be a string")
            base[name] = value
        base[FILEPATH_LABEL] = path
        targets = group.get("targets") or []
        if not isinstance(targets, list):
            raise FileSDError(f"target group {i}: targets must be a list")
        for t in targets:
            if not isinstance(t, str):
                raise FileSDError(f"target group {i}: target {t!r} is not a string")
            out.append({**base, "__address__": t})
    return out


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


@dataclass
class _FileState:
    stamp: tuple[int, int, int]
    targets: list[Target] = field(default_factory=list)
    error: str = ""


class FileDiscovery:
    """Keeps the targets of every file matching ``patterns``; ``on_change`` gets each new list."""

    def __init__(
        self,
        patterns: list[str],
        refresh_interval: float,
        on_change: Callable[[list[Target]], None],
        registry: CollectorRegistry | None = None,
        poll_interval: float = 1.0,
    ) -> None:
        self.patterns = list(patterns)
        self.refresh_interval = refresh_interval
        self.poll_interval = poll_interval
        self._on_change = on_change
        self._files: dict[str, _FileState] = {}
        self._last: list[Target] | None = None
        self._last_full = 0.0
        self._lock = asyncio.Lock()
        self._read_errors = Counter(
            "prometheus_sd_file_read_errors",
            "The number of file-based service discovery read failures.",
            registry=registry,
        )

    async def update(self, patterns: list[str], refresh_interval: float) -> None:
        async with self._lock:
            self.patterns = list(patterns)
            self.refresh_interval = refresh_interval
        await self.refresh_async(full=True)

    def errors(self) -> dict[str, str]:
        """The reason each failing file is not read (its last good targets are still used)."""
        return {p: s.error for p, s in sorted(self._files.items()) if s.error}

    def targets(self) -> list[Target]:
        return [t for _, s in sorted(self._files.items()) for t in s.targets]

    def list_files(self) -> list[str]:
        found: set[str] = set()
        for pattern in self.patterns:
            found.update(p for p in glob.glob(pattern) if os.path.isfile(p))
        return sorted(found)

    def refresh(self, full: bool = False) -> bool:
        """Re-reads changed files (all when ``full``); publishes and returns True on a change."""
        targets = self._scan(full)
        if targets is None:
            return False
        self._on_change(targets)
        return True

    async def refresh_async(self, full: bool = False) -> None:
        """``refresh`` with the file reads off the event loop; publishing stays on it."""
        async with self._lock:
            targets = await asyncio.to_thread(self._scan, full)
        if targets is not None:
            self._on_change(targets)

    def _scan(self, full: bool) -> list[Target] | None:
        now = time.monotonic()
        if now - self._last_full >= self.refresh_interval:
            full = True
        if full:
            self._last_full = now
        current = self.list_files()
        for gone in set(self._files) - set(current):
            del self._files[gone]
        for path in current:
            self._read(path, full)
        targets = self.targets()
        if targets == self._last:
            return None
        self._last = targets
        return targets

    def _read(self, path: str, full: bool) -> None:
        state = self._files.get(path)
        try:
            st = os.stat(path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
            if state is not None and state.stamp == stamp and not full and not state.error:
                return
            with open(path, "rb") as f:
                content = f.read()
            targets = parse(content, path)
        except Exception as exc:  # noqa: BLE001 - any bad file is that file's error, never a crash
            if isinstance(exc, OSError) and exc.strerror:
                reason = exc.strerror
            elif isinstance(exc, FileSDError):
                reason = str(exc)
            else:
                reason = f"cannot parse: {type(exc).__name__}: {_first_line(exc)}"
            if state is None:
                state = self._files[path] = _FileState((0, 0, 0))
            if state.error != reason or full:
                self._read_errors.inc()
            state.error = reason
            return
        self._files[path] = _FileState(stamp, targets)

    async def run(self) -> None:
        """Polls until cancelled."""
        while True:
            await asyncio.sleep(self.poll_interval)
            await self.refresh_async()
