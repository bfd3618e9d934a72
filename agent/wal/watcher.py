"""Following the WAL for one reader: decode each record and hand it to a ``WriteTo``.

A remote-write endpoint reads the WAL from its own durable position, as it
grows, across segments. The following itself (where to read next, segments
truncated under the reader, a corrupt frame, decoding records into columns,
waiting for new data) has nothing to do with sending, so it lives here and
knows its reader only through the ``WriteTo`` protocol, as Prometheus' WAL
watcher knows its queue manager.

Series records are not passed on: a reader resolves a ref through the
writer's in-memory table (``WAL.labels_by_ref``), which replay and
checkpoints keep complete for every ref a segment on disk can mention, and
the owner of the WAL tells readers which refs it forgot at truncation.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from agent.wal import record as walrec
from agent.wal.reader import Cursor, Record
from agent.wal.writer import WAL

READ_BYTES = 128 * 1024  # compressed WAL bytes per read: bounds the time one read's appends hold the loop
# Loop time one turn of the watcher may spend handing records over before it yields: a
# 128 KiB read decodes into ~60k samples, ~50 ms of CPU the loop would not get back.
HAND_OVER_BUDGET = 0.005
IDLE_WAIT = 1.0  # seconds between looks at the WAL when nobody said it grew


class WriteTo(Protocol):
    """What a WAL reader is told, record by record, in WAL order.

    ``seg`` and ``off`` say where the record's frame starts: with a sample's
    index in its record they make a point a reader can resume from.
    """

    async def ready(self) -> bool:
        """Before each read: wait until there is room for more; False to look again first."""
        ...

    def append_samples(self, seg: int, off: int, refs: array, tss: array, vals: array) -> None: ...

    def append_histograms(self, seg: int, off: int, refs: array, tss: array, bodies: list[Any]) -> None: ...

    def skip_histograms(self, n: int) -> None:
        """A histograms record of ``n`` samples the reader does not want (never decoded)."""
        ...

    def append_exemplars(self, seg: int, off: int, refs: array, tss: array, vals: array,
                         labels: list[Any]) -> None: ...

    def update_metadata(self, items: list[tuple[str, str, str, str]]) -> None:
        """Metric families' ``(name, type, help, unit)``, as the WAL recorded them."""
        ...

    def records_read(self) -> None:
        """A read delivered records: a point to flush clocks and counts, once per read, not per record."""
        ...

    def wal_error(self, msg: str) -> None:
        """A record that cannot be decoded, a read that failed, a corrupt segment."""
        ...


class Watcher:
    """Reads the WAL from a position for one ``WriteTo``, until stopped.

    ``position`` is the end of the last record handed over (a record
    boundary), which is what a reader may call read when its shards are idle.
    """

    def __init__(
        self,
        wal: WAL,
        segment: int,
        offset: int,
        to: WriteTo,
        *,
        histograms: bool = True,
        exemplars: bool = True,
        on_corrupt_active: Callable[[], None] | None = None,
        logger: Any = None,
    ) -> None:
        self.wal = wal
        self.cursor = Cursor(wal.directory, segment, offset)
        self.position: tuple[int, int] = (segment, offset)
        self.to = to
        self.histograms = histograms
        self.exemplars = exemplars
        self._on_corrupt_active = on_corrupt_active
        self._log = logger or structlog.get_logger("wal.watcher")
        self._data = asyncio.Event()
        self._last_corruption: str | None = None
        self._held: list[Record] = []  # read but not handed over yet (the budget ran out)
        self.stopping = False

    def wake(self) -> None:
        """New records were appended, or the reader made room: look now rather than at the next tick."""
        self._data.set()

    async def run(self) -> None:
        while not self.stopping:
            if not await self.to.ready():
                continue
            self._data.clear()
            try:
                n = self.read_once(budget=HAND_OVER_BUDGET)
            except OSError as exc:
                self.to.wal_error(f"reading the WAL: {exc}")
                await asyncio.sleep(1.0)
                continue
            if n:
                self.to.records_read()
                await asyncio.sleep(0)
                continue
            try:
                await asyncio.wait_for(self._data.wait(), IDLE_WAIT)
            except TimeoutError:
                pass

    def read_once(self, max_bytes: int = READ_BYTES, budget: float | None = None) -> int:
        """One read of about ``max_bytes``, handed over; returns how many records were handed over.

        With a ``budget`` (seconds) the hand-over stops once it is spent and the
        rest of the read is handed over by the next calls, so a large read never
        holds the event loop for long; ``position`` stays at a record boundary.
        """
        if self._held:
            records, self._held = self._held, []
        else:
            r = self.cursor.read(max_bytes)
            for s in r.skipped_segments:
                self._log.warning("WAL segment removed before it was sent", segment=s)
            if r.corruption and r.corruption != self._last_corruption:
                self._last_corruption = r.corruption
                self.to.wal_error(f"WAL corruption, rest of segment skipped: {r.corruption}")
                if self.cursor.segment == self.wal.segment and self._on_corrupt_active is not None:
                    self._on_corrupt_active()
            records = r.records
        deadline = time.perf_counter() + budget if budget is not None else None
        for i, rec in enumerate(records):
            self.hand_over(rec)
            self.position = (rec.segment, rec.end)
            if deadline is not None and i + 1 < len(records) and time.perf_counter() > deadline:
                self._held = records[i + 1:]
                return i + 1
        self.position = self.cursor.position()
        return len(records)

    def hand_over(self, rec: Record) -> None:
        """Decode one record and tell the reader; a record that does not decode is reported and skipped."""
        to = self.to
        try:
            if rec.type == walrec.SAMPLES:
                refs, tss, vals = walrec.decode_samples(rec.payload)
                if len(vals):
                    to.append_samples(rec.segment, rec.offset, refs, tss, vals)
            elif rec.type == walrec.HISTOGRAMS:
                if not self.histograms:
                    to.skip_histograms(walrec.histograms_count(rec.payload))
                    return
                refs, tss, bodies = walrec.decode_histogram_bodies(rec.payload)
                if len(bodies):
                    to.append_histograms(rec.segment, rec.offset, refs, tss, bodies)
            elif rec.type == walrec.EXEMPLARS:
                if not self.exemplars:
                    return
                refs, tss, vals, labels = walrec.decode_exemplars(rec.payload)
                if len(vals):
                    to.append_exemplars(rec.segment, rec.offset, refs, tss, vals, labels)
            elif rec.type == walrec.METADATA:
                to.update_metadata(walrec.decode_metadata(rec.payload))
        except walrec.RecordError as exc:
            to.wal_error(f"WAL record at segment {rec.segment} offset {rec.offset}: {exc}")
