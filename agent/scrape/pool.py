"""All the targets of one scrape job, kept in step with discovery (Prometheus' ``scrapePool``).

``sync`` turns discovered label sets into targets, starts a loop for each new
one, leaves running loops alone, and stops the loops of targets that vanished;
those write stale markers for all their series about two intervals later. A
config change restarts loops only when the config really changed, handing the
scrape cache to the new loop when the change cannot alter the series produced
(interval, timeout, sample_limit, HTTP settings), so no spurious staleness or
"series added" follows a reload. ``stop`` ends everything without stale
markers, as Prometheus does on shutdown: the agent resumes where it left off.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import Callable

import structlog

from agent import labels as L
from agent.labels import Labels
from agent.scrape.cache import ScrapeCache, last_series
from agent.scrape.config import ScrapeConfig
from agent.scrape.loop import ScrapeLoop
from agent.scrape.offset import agent_seed
from agent.scrape.ownership import Ownership, target_key
from agent.scrape.target import Target, TargetStatus, populate_labels
from agent.storage import HANDOFF_NAN, Appendable, SampleBatch

log = structlog.get_logger("scrape")

# Fields that change scheduling or transport only; the series produced stay the same.
_CACHE_NEUTRAL = (
    "scrape_interval", "scrape_timeout", "sample_limit", "http", "honor_metadata", "keep_dropped_targets",
)


def _key(final: Labels) -> Labels:
    """A loop's identity: the target's labels without its interval and timeout.

    A target whose only change is how often it is scraped keeps its series, so
    it is restarted with its cache instead of being replaced (which would write
    stale markers for series that are still there).
    """
    return tuple(p for p in final if p[0] not in (L.SCRAPE_INTERVAL, L.SCRAPE_TIMEOUT))


def _cache_reusable(a: ScrapeConfig, b: ScrapeConfig) -> bool:
    za = dataclasses.replace(a, **{f: getattr(b, f) for f in _CACHE_NEUTRAL})
    return za == b


@dataclasses.dataclass(slots=True)
class DroppedTarget:
    discovered_labels: Labels
    reason: str  # "" when target relabeling dropped it


@dataclasses.dataclass(slots=True)
class ElsewhereTarget:
    """A target this agent leaves to another one (clustering): who scrapes it."""

    labels: Labels
    owner: str


class ScrapePool:
    def __init__(
        self,
        config: ScrapeConfig,
        appendable: Appendable,
        *,
        seed: int | None = None,
        ownership: Ownership | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.appendable = appendable
        # With an ownership the seed must be the same on every agent, so a target
        # moved to another agent is scraped at the same phase of its interval.
        self.seed = agent_seed() if seed is None else seed
        self.ownership = ownership
        # With an ownership: told (target key, discovered labels) of every wanted target before
        # ownership is asked, so the cluster can compare target sets and find each one's node.
        self.on_wanted: Callable[[list[tuple[bytes, Labels]]], None] | None = None
        self._loops: dict[Labels, ScrapeLoop] = {}
        self._retiring: set[ScrapeLoop] = set()
        self._discovered: list[Labels] = []
        self._dropped: list[DroppedTarget] = []
        self.dropped_count = 0  # all targets relabeling dropped, kept or not (keep_dropped_targets)
        self._elsewhere: list[ElsewhereTarget] = []
        self._later: set[Labels] = set()  # loops started for a target owned from a pending switch
        self.moved_away = 0  # targets handed to another agent (prometheus_scrape_targets_moved_total)
        # Ticks no scrape was made for, by reason (agent/scrape/loop.py), over every loop ever run.
        self.skipped: Counter[str] = Counter()
        self._stopped = False

    # ------------------------------------------------------------ discovery

    def _targets(self, discovered: list[Labels]) -> dict[Labels, Target]:
        out: dict[Labels, Target] = {}
        dropped: list[DroppedTarget] = []
        keep = self.config.keep_dropped_targets
        count = 0
        for d in discovered:
            try:
                final = populate_labels(d, self.config)
            except ValueError as exc:
                dropped.append(DroppedTarget(d, str(exc)))
                continue
            if final is None:
                # Prometheus keeps at most keep_dropped_targets of them (0: all) and counts every one.
                if not keep or count < keep:
                    dropped.append(DroppedTarget(d, ""))
                count += 1
                continue
            key = _key(final)
            if key not in out:
                out[key] = Target(d, final, self.config.params)
        self._dropped = dropped
        self.dropped_count = count
        return out

    def _owned(self, wanted: dict[Labels, Target]) -> dict[Labels, Target]:
        """The wanted targets this agent scrapes; the rest are recorded with their owner."""
        own = self.ownership
        if own is None:
            self._elsewhere, self._later = [], set()
            return wanted
        mine: dict[Labels, Target] = {}
        elsewhere: list[ElsewhereTarget] = []
        keyed = [(key, target, target_key(target.labels)) for key, target in wanted.items()]
        if self.on_wanted is not None:
            self.on_wanted([(tkey, target.discovered) for _, target, tkey in keyed])
        switches = own.switches()
        later: set[Labels] = set()
        for key, target, tkey in keyed:
            # Owned now, or from a scheduled switch: the loop then exists before its first slot
            # and asks for each slot's time whether it is ours yet; until then the target is
            # shown as scraped by its current owner.
            if own.owns(tkey):
                mine[key] = target
            elif any(own.owns(tkey, at=t) for t in switches):
                mine[key] = target
                later.add(key)
                elsewhere.append(ElsewhereTarget(target.labels, own.owner(tkey)))
            else:
                elsewhere.append(ElsewhereTarget(target.labels, own.owner(tkey)))
        self._elsewhere = elsewhere
        self._later = later
        return mine

    def _still_owned(self, target: Target) -> Callable[[float], bool] | None:
        own = self.ownership
        if own is None:
            return None
        tkey = target_key(target.labels)
        return lambda at: own.owns(tkey, at=at)

    def sync(self, targets: list[Labels]) -> None:
        """Make the running loops match ``targets`` (discovered label sets)."""
        if self._stopped:
            raise RuntimeError("scrape pool is stopped")
        self._discovered = list(targets)
        wanted = self._targets(self._discovered)
        mine = self._owned(wanted)
        self._drop_unwanted(wanted, mine)
        for key, target in mine.items():
            prev = self._loops.get(key)
            if prev is not None and prev.target.labels == target.labels:
                continue
            cache = None
            if prev is not None:
                self._retire(prev, end_of_run_staleness=False)
                cache = prev.cache
            self._start(key, target, self.config, cache)
        self._apply_target_limit()

    def rebalance(self) -> None:
        """Apply a change of ownership (the cluster's membership changed) to the known targets."""
        if not self._stopped:
            self.sync(self._discovered)

    def _drop_unwanted(self, wanted: dict[Labels, Target], mine: dict[Labels, Target]) -> None:
        """Stop loops of targets that vanished (stale markers) or moved to another agent (none:
        the new owner goes on writing the same series, and markers from here would race it)."""
        for key in [k for k in self._loops if k not in mine]:
            moved = key in wanted
            self.moved_away += moved
            loop = self._loops.pop(key)
            self._retire(loop, end_of_run_staleness=not moved)
            if moved:
                self._hand_off(loop)

    def _hand_off(self, loop: ScrapeLoop) -> None:
        """Tell the queues downstream that another agent writes this target's series now.

        One handoff marker per series of the last scrape (agent/remote/handoff.py), stamped
        with a cut-off: the new owner scrapes at the same phase, so its first sample is one
        interval after our last scrape. If that scrape is less than an interval old, or the
        slot right after it was the first one another agent owned (a scheduled switch: the
        rebalance may come a little later), it is older than anything the new owner can have
        written and is kept (the cut-off is its timestamp); if it is older (we missed scrapes:
        a stall), the new owner may have written newer samples already, and everything unsent
        is dropped (the cut-off is now).
        """
        last = loop.status.last_scrape
        if not last:
            return
        now = time.time()
        given = loop.given_up_at
        handed = given is not None and given - last < 1.5 * loop.interval
        cutoff = int((last if handed or now - last < loop.interval else now) * 1000)
        batch = SampleBatch()
        for lab in last_series(loop.cache):
            batch.add(lab, cutoff, HANDOFF_NAN)
        for lab in loop.report_labels:
            batch.add(lab, cutoff, HANDOFF_NAN)
        try:
            self.appendable.append(batch)
        except Exception as exc:  # noqa: BLE001 - a receiver failing must not stop the rebalance
            log.warning("handoff markers not appended", target=loop.target.url, err=str(exc))

    def _start(self, key: Labels, target: Target, config: ScrapeConfig, cache: ScrapeCache | None) -> ScrapeLoop:
        loop = ScrapeLoop(target, config, self.appendable, self.seed, cache, owned=self._still_owned(target),
                          skipped=self.skipped)
        self._loops[key] = loop
        loop.start()
        return loop

    def _apply_target_limit(self) -> None:
        limit = self.config.target_limit
        err = None
        if limit and len(self._loops) > limit:
            err = f"target_limit exceeded (number of targets: {len(self._loops)}, limit: {limit})"
        for loop in self._loops.values():
            loop.forced_error = err

    def _retire(self, loop: ScrapeLoop, end_of_run_staleness: bool) -> None:
        task = loop.stop(end_of_run_staleness)
        self._retiring.add(loop)
        if task is None:
            self._retiring.discard(loop)
            return
        task.add_done_callback(lambda _t, lp=loop: self._retiring.discard(lp))

    # ------------------------------------------------------------ config

    def update_config(self, config: ScrapeConfig) -> None:
        """Apply a new config; loops restart only if it differs, keeping caches when safe."""
        if config == self.config:
            return
        config.validate()
        old, self.config = self.config, config
        reuse = _cache_reusable(old, config)
        wanted = self._targets(self._discovered)
        mine = self._owned(wanted)
        self._drop_unwanted(wanted, mine)
        for key, target in mine.items():
            prev = self._loops.get(key)
            cache = None
            if prev is not None:
                self._retire(prev, end_of_run_staleness=False)
                cache = prev.cache if reuse else ScrapeCache()
            loop = self._start(key, target, config, cache)
            if prev is not None:
                loop.status = dataclasses.replace(
                    prev.status, interval=target.interval, timeout=target.timeout
                )
        self._apply_target_limit()

    # ------------------------------------------------------------ status + shutdown

    def targets(self) -> list[TargetStatus]:
        """The targets scraped here (not those whose loop waits for a scheduled switch)."""
        return [loop.status for key, loop in self._loops.items() if key not in self._later]

    def dropped_targets(self) -> list[DroppedTarget]:
        return list(self._dropped)

    def elsewhere_targets(self) -> list[ElsewhereTarget]:
        """Targets discovered here and scraped by another agent (empty without clustering)."""
        return list(self._elsewhere)

    async def stop(self) -> None:
        """Stop every loop, without stale markers (as on shutdown), and close clients."""
        self._stopped = True
        loops = list(self._loops.values()) + list(self._retiring)
        self._loops.clear()
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*(loop.wait() for loop in loops), return_exceptions=True)
        self._retiring.clear()
