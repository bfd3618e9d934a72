"""One target's scrape loop, scheduled and reported as Prometheus' ``scrapeLoop``.

Each scrape appends exactly one SampleBatch: the target's samples (or none when
it failed), stale markers for series that went away, and the synthetic report
series (``up``, ``scrape_duration_seconds``, ...). Samples carry the scrape's
scheduled time, aligned to the tick when within 2 ms (Prometheus' timestamp
tolerance), so timestamps compress well downstream.

The body is parsed in chunks of lines with a yield to the event loop between
them, so a 20 MB exposition never holds the loop for more than a few ms.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

import structlog

from agent.labels import METRIC_NAME, Labels
from agent.scrape.cache import (
    ScrapeCache,
    ScrapeError,
    SeriesBuilder,
    commit,
    fail,
)
from agent.scrape.config import ScrapeConfig
from agent.scrape.nativehist import pick_schema
from agent.scrape.offset import offset, slot_time, target_hash
from agent.scrape.openmetrics import scan_openmetrics
from agent.scrape.protoparse import MEDIA_TYPE as PROTO_MEDIA_TYPE
from agent.scrape.protoparse import scan_protobuf
from agent.scrape.scraper import FetchError, Scraper
from agent.scrape.target import Target, TargetStatus
from agent.scrape.textparse import (
    ParseError,
    ScanState,
    build_metadata,
    iter_line_chunks,
    scan_text,
)
from agent.scrape.typeunit import Families
from agent.storage import STALE_NAN, Appendable, SampleBatch, admission

log = structlog.get_logger("scrape")

REPORT_NAMES = (
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
)
EXTRA_REPORT_NAMES = ("scrape_timeout_seconds", "scrape_sample_limit", "scrape_body_size_bytes")
TIMESTAMP_TOLERANCE = 0.002
# A tick the loop reaches later than this fraction of the interval is skipped, not scraped
# late: an overloaded loop that scraped every late tick would turn a stall into a burst.
MAX_LATENESS = 0.25
SKIP_LATE = "late"  # the event loop reached the tick (and any after it) too late
SKIP_OVERRUN = "overrun"  # this target's previous scrape ran past whole ticks
SKIP_BACKPRESSURE = "backpressure"  # remote write downstream cannot send what scrapes produce
CHUNK_BYTES = 256 * 1024
# A target's first scrape builds every series' labels (~10 us a series, 7x a cached one):
# its body is parsed in smaller chunks, so the loop gets a turn every few ms.
COLD_CHUNK_BYTES = 32 * 1024
THREAD_BYTES = 1024 * 1024


def choose_parser(content_type: str, fallback: str) -> str:
    """ "text", "openmetrics" or "protobuf" for a response's Content-Type, as Prometheus picks.

    A missing or unknown media type uses the fallback protocol when one is
    configured; otherwise it is an error (ValueError with Prometheus' reason).
    """
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/openmetrics-text":
        return "openmetrics"
    if media == "text/plain":
        return "text"
    if media == PROTO_MEDIA_TYPE:
        return "protobuf"
    if fallback.startswith("OpenMetrics"):
        return "openmetrics"
    if fallback.startswith("PrometheusText"):
        return "text"
    if fallback == "PrometheusProto":
        return "protobuf"
    if not media:
        raise ValueError(
            "non-compliant scrape target sending blank Content-Type and no "
            "fallback_scrape_protocol specified for target"
        )
    raise ValueError(
        f"received unsupported Content-Type {content_type!r} and no "
        "fallback_scrape_protocol specified for target"
    )


class ScrapeLoop:
    """Scrapes one target until stopped; owns its HTTP client and (shared on reload) cache."""

    def __init__(
        self,
        target: Target,
        cfg: ScrapeConfig,
        appendable: Appendable,
        seed: int,
        cache: ScrapeCache | None = None,
        owned: Callable[[float], bool] | None = None,
        skipped: Counter[str] | None = None,
    ) -> None:
        self.target = target
        # Ticks without a scrape, by reason (shared by a pool's loops, so it outlives reloads).
        self.skipped: Counter[str] = skipped if skipped is not None else Counter()
        # Asked before every scrape, with the slot's scheduled wall time, when agents share
        # targets: an agent that resumes after a stall must not scrape what moved away
        # meanwhile, and the old and new owner of a scheduled move agree on the slot.
        self.owned = owned
        self.skipped_not_owned = 0
        # The slot time of the first tick not owned after the last scrape (None: owned since).
        self.given_up_at: float | None = None
        self.cfg = cfg
        self.appendable = appendable
        self.seed = seed
        self.cache = cache if cache is not None else ScrapeCache()
        self.builder = SeriesBuilder(self.cache, target.public, cfg)
        self.scraper = Scraper(target.url, cfg, target.timeout)
        self.interval = target.interval
        self._max_schema = pick_schema(cfg.native_histogram_min_bucket_factor)
        self.timeout = target.timeout
        self.forced_error: str | None = None
        self.status = TargetStatus(
            discovered_labels=target.discovered,
            labels=target.labels,
            scrape_url=target.url,
            interval=target.interval,
            timeout=target.timeout,
        )
        names = REPORT_NAMES + (EXTRA_REPORT_NAMES if cfg.extra_metrics else ())
        self.report_labels: list[Labels] = [
            tuple(sorted(((METRIC_NAME, n), *target.public))) for n in names
        ]
        self._stop = asyncio.Event()
        self._end_of_run = False
        self._task: asyncio.Task[None] | None = None
        self._inflight: asyncio.Task[None] | None = None
        self._next = 0.0  # monotonic time of the next tick
        # Shedding (agent/remote/admission.py asks for a share of ticks): each tick adds the
        # share, a scrape spends 1. Starting from the target's own phase, targets skip
        # different ticks, and each is scraped at the same rate: none is starved.
        self._credit = (target_hash(target.labels, target.url) % 1024) / 1024
        self._last: float | None = None  # wall time of the last scrape

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"scrape {self.target.url}"
        )

    def stop(self, end_of_run_staleness: bool) -> asyncio.Task[None] | None:
        """Ask the loop to stop after (or by cancelling) the current scrape.

        With ``end_of_run_staleness`` the task then waits about two intervals and
        writes stale markers for all the target's series, as Prometheus does for
        a target that went away; ``cancel`` skips that (shutdown, reload).
        """
        self._end_of_run = end_of_run_staleness
        self._stop.set()
        if self._inflight is not None and not self._inflight.done():
            self._inflight.cancel()
        return self._task

    def cancel(self) -> asyncio.Task[None] | None:
        self._end_of_run = False
        self._stop.set()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        return self._task

    async def wait(self) -> None:
        if self._task is not None:
            try:
                await self._task
            except asyncio.CancelledError:
                if not self._task.cancelled():
                    raise
        await self.scraper.close()

    # ------------------------------------------------------------ scheduling

    async def _sleep_until(self, deadline: float) -> bool:
        """Sleep until monotonic ``deadline``; True if stopped meanwhile."""
        delay = deadline - asyncio.get_running_loop().time()
        if self._stop.is_set():
            return True
        if delay <= 0:
            return False
        try:
            async with asyncio.timeout(delay):
                await self._stop.wait()
            return True
        except TimeoutError:
            return False

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        thash = target_hash(self.target.labels, self.target.url)
        first = offset(self.interval, thash, self.seed)
        self._next = loop.time() + first
        try:
            if await self._sleep_until(self._next):
                return
            aligned = time.time()
            while True:
                if loop.time() - self._next > self.interval * MAX_LATENESS:
                    self.skipped[SKIP_LATE] += 1 + self._advance(loop.time())
                    if await self._sleep_until(self._next):
                        break
                    continue
                scrape_time = time.time()
                while scrape_time - aligned >= self.interval:
                    aligned += self.interval
                if scrape_time - aligned <= min(self.interval / 100, TIMESTAMP_TOLERANCE):
                    scrape_time = aligned
                slot = slot_time(self.interval, thash, self.seed, scrape_time)
                if self.owned is not None and not self.owned(slot):
                    self.skipped_not_owned += 1
                    if self.given_up_at is None:
                        self.given_up_at = slot
                    self._advance(loop.time())
                    if await self._sleep_until(self._next):
                        break
                    continue
                if not self._admitted():
                    self.skipped[SKIP_BACKPRESSURE] += 1
                    self._advance(loop.time())
                    if await self._sleep_until(self._next):
                        break
                    continue
                self.given_up_at = None
                self._inflight = loop.create_task(self.scrape_and_report(scrape_time))
                try:
                    await self._inflight
                except asyncio.CancelledError:
                    if not self._stop.is_set():
                        raise
                    break
                self._last = scrape_time
                missed = self._advance(loop.time())
                if missed:
                    self.skipped[SKIP_OVERRUN] += missed
                if await self._sleep_until(self._next):
                    break
            if self._end_of_run:
                await self._end_of_run_staleness()
        finally:
            await self.scraper.close()

    def _admitted(self) -> bool:
        """Whether this tick is scraped while the receivers downstream ask for a share of them."""
        share = admission(self.appendable)
        if share >= 1.0:
            return True
        self._credit += share
        if self._credit < 1.0:
            return False
        self._credit -= 1.0
        return True

    def _advance(self, now: float) -> int:
        """Move to the next tick, dropping whole ticks already passed; how many were dropped.

        At most one passed tick is kept (less than an interval ago): the top of
        ``_run`` scrapes it if it is still nearly on time and skips it otherwise.
        Missed ticks are never made up for: scraping them late would bunch the
        target's scrapes (and every late target's) into a burst.
        """
        self._next += self.interval
        if self._next >= now:
            return 0
        missed = int((now - self._next) // self.interval)
        self._next += missed * self.interval
        return missed

    async def _end_of_run_staleness(self) -> None:
        """Stale markers for a target that went away, ~2 intervals later, stamped at the next tick.

        Waiting gives a target that was only moved (and is scraped again) the
        chance to write newer samples first; then these markers are too old to matter.
        """
        if self._last is None:
            return
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()  # the waits below end only by time or cancellation
        self._advance(loop.time())
        await self._sleep_until(self._next)
        stale_time = time.time()
        self._advance(loop.time())
        await self._sleep_until(self._next)
        await self._sleep_until(loop.time() + self.interval / 10)
        ts = int(stale_time * 1000)
        batch = SampleBatch()
        for lab in fail(self.cache):
            batch.add(lab, ts, STALE_NAN)
        for lab in self.report_labels:
            batch.add(lab, ts, STALE_NAN)
        self._append(batch)

    # ------------------------------------------------------------ one scrape

    async def scrape_and_report(self, scrape_time: float) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        ts = int(scrape_time * 1000)
        batch = SampleBatch()
        err = self.forced_error
        size = 0
        scraped = added = series_added = 0
        if err is None:
            try:
                body, ctype = await self.scraper.fetch()
                size = len(body)
            except FetchError as exc:
                err = str(exc)
                size = -1 if exc.body_limit else 0
        if err is None:
            err, scraped, added, series_added = await self.ingest(body, ctype, ts, batch)
            del body
        if err is not None:
            for lab in fail(self.cache):
                batch.add(lab, ts, STALE_NAN)
        duration = loop.time() - start
        rl = self.report_labels
        batch.add(rl[0], ts, 0.0 if err is not None else 1.0)
        batch.add(rl[1], ts, duration)
        batch.add(rl[2], ts, float(scraped))
        batch.add(rl[3], ts, float(added))
        batch.add(rl[4], ts, float(series_added))
        if self.cfg.extra_metrics:
            batch.add(rl[5], ts, self.timeout)
            batch.add(rl[6], ts, float(self.cfg.sample_limit))
            batch.add(rl[7], ts, float(size))
        if series_added > 100:
            await asyncio.sleep(0)  # the WAL writes new series' records (~4 us each): its own turn
        self._append(batch)
        s = self.status
        s.health = "down" if err is not None else "up"
        s.last_error = err or ""
        s.last_scrape = scrape_time
        s.last_scrape_duration = duration
        s.series = added
        if err is not None:
            log.debug("scrape failed", url=self.target.url, err=err)

    async def ingest(
        self, body: bytes, ctype: str, ts: int, batch: SampleBatch
    ) -> tuple[str | None, int, int, int]:
        """Parse a body through the cache into ``batch``: (error, scraped, added, series added).

        On success the batch holds the samples and the stale markers of series
        that went away; on error it is left empty and the cache unchanged
        (apart from entries learned), so the caller can write the failure.

        Bodies over THREAD_BYTES are parsed in a worker thread: measured on a
        20 MB body it is faster than chunking on the loop (no per-chunk
        scheduling) and the GIL's switch interval bounds the loop's stall to
        a few ms, where chunking stalls it for a whole chunk. Small bodies stay
        on the loop, where a thread hand-off would cost more than the parse.
        """
        cache = self.cache
        if len(body) > THREAD_BYTES or not cache.lock.acquire(blocking=False):
            return await asyncio.to_thread(self._ingest_sync, body, ctype, ts, batch)
        try:
            st = self._state()
            chunk = CHUNK_BYTES if cache.entries else COLD_CHUNK_BYTES
            try:
                kind = choose_parser(ctype, self.cfg.scrape_fallback_protocol)
                self._families(kind, body, st)
                if kind == "protobuf":
                    self._proto_state(st)
                    pos, n = 0, len(body)
                    while pos < n:
                        if pos:
                            await asyncio.sleep(0)
                        pos = scan_protobuf(body, st, pos, pos + chunk)
                else:
                    scan = scan_text if kind == "text" else scan_openmetrics
                    for i, lines in enumerate(iter_line_chunks(body, chunk)):
                        if i:
                            await asyncio.sleep(0)
                        scan(lines, st)
                    if kind == "openmetrics":
                        scan_openmetrics(None, st)  # end of input: checks # EOF
                if chunk == COLD_CHUNK_BYTES:
                    await asyncio.sleep(0)  # committing a first scrape's new series is a turn of its own
            except (ParseError, ValueError) as exc:
                return self._error(exc, st)
            return self._finish(st, ts, batch)
        finally:
            cache.lock.release()

    def _state(self) -> ScanState:
        self.builder.added = 0
        return ScanState(
            cache=self.cache.entries,
            resolve=self.builder.resolve,
            comments=self.cache.comments,
            shape=self.cache.shape,
        )

    def _families(self, kind: str, body: bytes, st: ScanState) -> None:
        """With type-and-unit labels, where this scrape's series find their family's type and unit."""
        if self.cfg.type_and_unit_labels:
            if kind == "protobuf":
                self.builder.families = Families(st.meta_items)
            else:
                self.builder.families = Families(body=body)

    def _proto_state(self, st: ScanState) -> None:
        """Set up ``st`` for a protobuf body: label building from pairs, records, histogram options."""
        cfg = self.cfg
        st.resolve_pairs = self.builder.resolve_pairs
        st.records = self.cache.records
        st.native = cfg.native_histograms()
        st.classic = cfg.scrape_classic_histograms
        st.max_schema = self._max_schema
        st.bucket_limit = cfg.native_histogram_bucket_limit

    def _error(self, exc: Exception, st: ScanState) -> tuple[str | None, int, int, int]:
        return str(exc), len(st.keys) + len(st.hkeys), len(st.values), self.builder.added

    def _ingest_sync(
        self, body: bytes, ctype: str, ts: int, batch: SampleBatch
    ) -> tuple[str | None, int, int, int]:
        with self.cache.lock:
            st = self._state()
            try:
                kind = choose_parser(ctype, self.cfg.scrape_fallback_protocol)
                self._families(kind, body, st)
                if kind == "protobuf":
                    self._proto_state(st)
                    scan_protobuf(body, st)
                else:
                    scan = scan_text if kind == "text" else scan_openmetrics
                    for lines in iter_line_chunks(body, CHUNK_BYTES):
                        scan(lines, st)
                    if kind == "openmetrics":
                        scan_openmetrics(None, st)
            except (ParseError, ValueError) as exc:
                return self._error(exc, st)
            return self._finish(st, ts, batch)

    def _finish(
        self, st: ScanState, ts: int, batch: SampleBatch
    ) -> tuple[str | None, int, int, int]:
        cache = self.cache
        try:
            done = commit(cache, st, ts, self.cfg)
        except ScrapeError as exc:
            return self._error(exc, st)
        batch.labels = done.labels
        batch.timestamps = done.timestamps
        batch.values = done.values
        if done.histograms:
            batch.histograms = done.histograms
        for lab in done.stale:
            batch.add(lab, ts, STALE_NAN)
        if st.exemplars:
            batch.exemplars = self._exemplars(st.exemplars, ts)
        if not self.cfg.honor_metadata:
            pass  # Alloy's honor_metadata = false: nothing handed downstream
        elif st.meta_items == cache.last_meta_items:
            batch.metadata = cache.last_metadata
        else:
            batch.metadata = build_metadata(st.meta_items, cache.metas)
            cache.last_meta_items, cache.last_metadata = st.meta_items, batch.metadata
        scraped = len(st.keys) + len(st.hkeys)
        # Repeats dropped above still count as samples after relabeling, as in
        # Prometheus' scrapeLoop.append ("the exact number of time series exposed").
        added = len(done.values) + len(done.histograms) + done.duplicates
        return None, scraped, added, self.builder.added

    def _exemplars(self, found: list[tuple], ts: int) -> list[tuple[Labels, int, float, Labels]]:
        """The scrape's exemplars for the batch, timed as Prometheus' scrapeLoop does.

        An exemplar without its own timestamp gets its sample's: the sample's
        explicit timestamp when honored, else the scrape's. There is no
        per-scrape exemplar limit in Prometheus (its exemplar storage is a
        ring buffer sized by ``max_exemplars``), so none is applied here.
        """
        honor = self.cfg.honor_timestamps
        out: list[tuple[Labels, int, float, Labels]] = []
        for lab, ex_ts, sample_ts, value, elabels in found:
            if ex_ts is None:
                ex_ts = sample_ts if sample_ts is not None and honor else ts
            out.append((lab, ex_ts, value, elabels))
        return out

    def _append(self, batch: SampleBatch) -> None:
        try:
            self.appendable.append(batch)
        except Exception as exc:  # noqa: BLE001 - a failing receiver must not kill the loop
            log.warning("append failed", url=self.target.url, err=str(exc))
