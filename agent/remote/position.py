"""Durable send positions: where each endpoint resumes after a restart.

A position is kept per shard, as ``(segment, offset, index)``: every sample
routed to that shard that lies before the record at ``segment/offset``, or is
among its first ``index`` samples, has been acknowledged by the backend.
Keeping it per shard, not one number per endpoint, means a restart re-sends
only what each shard had not had acknowledged (at most the batch in flight at
the crash), never a faster shard's acknowledged batches: a backend like
Prometheus rejects an old sample of a series that already has a newer one
as out of order, and throws the whole request away with it.

A shard about to send a batch with several samples of one series (a
catch-up batch, agent/remote/dispatch.py) first commits that batch's end as
its *intent*: after a crash the range up to it may or may not have been
accepted, and is re-sent as requests of one sample per series each, cut
exactly at the intent (see agent/remote/queue.py).

The file is replaced atomically (write a temporary, fsync, rename, fsync the
folder), so it is always one complete committed state.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import structlog

from agent.wal.segment import fsync_dir

log = structlog.get_logger("remote.position")

Point = tuple[int, int, int]


@dataclass(slots=True)
class Position:
    points: list[Point]  # one per shard; len(points) is the shard count they were made with
    intents: list[Point | None] | None = None  # per shard, the end of a catch-up batch maybe sent

    def low(self) -> tuple[int, int]:
        """The earliest record any shard still needs: where reading resumes."""
        s, o, _ = min(self.points)
        return s, o

    @classmethod
    def uniform(cls, segment: int, offset: int, shards: int) -> Position:
        return cls([(segment, offset, 0)] * shards)


class PositionStore:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _path(self, key: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
        return self.directory / f"{safe}.json"

    def load(self, key: str) -> Position | None:
        path = self._path(key)
        try:
            data = json.loads(path.read_text())
            points = [(int(s), int(o), int(i)) for s, o, i in data["points"]]
            if not points or any(v < 0 for p in points for v in p):
                raise ValueError("empty or negative position")
            raw = data.get("intents")
            intents: list[Point | None] | None = None
            if isinstance(raw, list) and len(raw) == len(points):
                intents = [None if e is None else (int(e[0]), int(e[1]), int(e[2])) for e in raw]
            return Position(points, intents)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("unreadable send position, starting from the oldest data", file=str(path), error=str(exc))
            return Position([(0, 0, 0)])

    def save(self, key: str, pos: Position) -> None:
        """Blocking (fsync): run in a thread."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(key)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            doc: dict[str, object] = {"version": 1, "points": pos.points}
            if pos.intents and any(e is not None for e in pos.intents):
                doc["intents"] = pos.intents
            os.write(fd, json.dumps(doc).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        fsync_dir(self.directory)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass
