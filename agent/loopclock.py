"""One clock for the agent's event loop: how late it runs, and when it stalled.

Two engines must react when the shared event loop stops running for a while
(SIGSTOP, a CPU-starved host, a callback that blocks): the cluster service,
whose view of the membership is stale afterwards and which may have to hand
targets off (writing handoff markers), and the remote-write queues, which must
not send a sample the handoff drops before the markers are written. They used
to find stalls with a ticker each, with thresholds of their own, and the queue
waited a fixed "settle" time hoping the cluster had acted by then.

Here there is one ticker and one threshold. A stall is a ``Stall`` (when the
loop last ran, when it ran again, a sequence number) delivered to subscribers
in the order of their ``rank`` (the cluster's rebalance, which writes the
markers, first), each given the chance to finish asynchronous work; only when
all of them are done is the stall *settled*, and ``settled()`` is what a queue
awaits before a send. An ordering, not a timeout. The ticker also feeds the
lag histogram (``shoal_event_loop_lag_seconds``, agent/runtime/looplag.py).

Engines import this module; it imports nothing of the agent, so the runtime is
not pulled in (.importlinter).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger("loopclock")

THRESHOLD = 1.5  # the loop silent this long (seconds) is a stall
PERIOD = 0.1  # the ticker's sleep; the lag histogram's sampling period

# Ranks: subscribers of a lower rank finish before a higher rank hears of the stall.
HANDOFFS = 0  # who writes handoff markers after a stall (the cluster service's rebalance)


@dataclass(frozen=True, slots=True)
class Stall:
    """The loop did not run from ``began`` to ``ended`` (monotonic seconds)."""

    began: float
    ended: float
    epoch: int  # 1 for the process' first stall, then 2, ...

    @property
    def seconds(self) -> float:
        return self.ended - self.began


# A subscriber may return an awaitable: the stall is settled only after it completes.
OnStall = Callable[[Stall], Awaitable[None] | None]


class LoopClock:
    """Finds stalls of the running loop, tells subscribers in rank order, then settles them.

    A stall is seen by the ticker, or earlier by anyone calling ``check`` (a scrape
    loop asking whether it owns its target, a shard about to send), whichever runs
    first after the loop comes back: both compare with the last time anything looked.
    """

    def __init__(self, threshold: float = THRESHOLD, period: float = PERIOD,
                 on_lag: Callable[[float], None] | None = None) -> None:
        if threshold <= period or period <= 0:
            raise ValueError("loop clock: the stall threshold must exceed the tick period, which must be positive")
        self.threshold = threshold
        self.period = period
        self.on_lag = on_lag  # how late each tick woke (seconds): the lag histogram's observe
        self.epoch = 0  # stalls seen
        self.settled_epoch = 0  # stalls whose subscribers have all finished
        self.last: Stall | None = None
        self._last_seen = time.monotonic()
        self._subscribers: list[tuple[int, int, OnStall]] = []  # (rank, order added, callback)
        self._added = 0
        self._settled_evt: asyncio.Event | None = None
        self._delivering: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle (``shoal run`` starts it as a service, first) --
    # Unstarted, it finds no stalls: an engine's fallback clock that settles every send at once.

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._last_seen = time.monotonic()
            self._task = asyncio.get_running_loop().create_task(self._tick(), name="loop-clock")

    async def stop(self) -> None:
        for task in (self._task, self._delivering):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = None

    # -- what engines ask --

    def subscribe(self, callback: OnStall, rank: int = HANDOFFS) -> Callable[[], None]:
        """Hear of every stall, after lower ranks have finished with it; returns an unsubscribe.

        ``callback`` runs synchronously when the stall is found (possibly inside the
        caller of ``check``): it must only record state; work that notifies others
        belongs in the awaitable it returns, run on a later loop turn.
        """
        entry = (rank, self._added, callback)
        self._added += 1
        self._subscribers.append(entry)
        self._subscribers.sort(key=lambda e: (e[0], e[1]))

        def unsubscribe() -> None:
            if entry in self._subscribers:
                self._subscribers.remove(entry)

        return unsubscribe

    def check(self, now: float | None = None) -> Stall | None:
        """Look at the clock: a new stall if the loop was silent past the threshold, else None."""
        if now is None:
            now = time.monotonic()
        if self._task is None:  # not started: nobody proves the loop runs, a silence is no stall
            self._last_seen = now
            return None
        silent = now - self._last_seen
        if silent < 0:  # a caller's ``now`` taken before the last look
            return None
        self._last_seen = now
        if silent <= self.threshold:
            return None
        self.epoch += 1
        stall = self.last = Stall(now - silent, now, self.epoch)
        log.warning("event loop stalled", silent=round(silent, 3), epoch=stall.epoch)
        pending: list[Awaitable[None]] = []
        for _rank, _n, callback in list(self._subscribers):
            try:
                result = callback(stall)
            except Exception:  # a subscriber's bug must not keep the others from hearing
                log.exception("loop stall subscriber failed")
                continue
            if inspect.isawaitable(result):
                pending.append(result)
        previous = self._delivering
        self._settle_event().clear()
        self._delivering = asyncio.get_running_loop().create_task(
            self._deliver(stall, previous, pending), name=f"loop-stall-{stall.epoch}")
        return stall

    def is_settled(self) -> bool:
        """Every stall seen has been dealt with by every subscriber."""
        return self.settled_epoch >= self.epoch

    async def settled(self) -> None:
        """Wait until every stall seen (one found by this very look included) is dealt with."""
        self.check()
        while not self.is_settled():
            await self._settle_event().wait()

    # -- internals --

    def _settle_event(self) -> asyncio.Event:
        if self._settled_evt is None:
            self._settled_evt = asyncio.Event()
            if self.is_settled():
                self._settled_evt.set()
        return self._settled_evt

    async def _deliver(self, stall: Stall, previous: asyncio.Task[None] | None,
                       pending: list[Awaitable[None]]) -> None:
        """Run the subscribers' work in rank order, after the previous stall's, then settle."""
        try:
            if previous is not None and not previous.done():
                with contextlib.suppress(Exception):
                    await asyncio.shield(previous)
            for work in pending:
                try:
                    await work
                except Exception:
                    log.exception("loop stall subscriber failed")
        finally:
            self.settled_epoch = max(self.settled_epoch, stall.epoch)
            if self.is_settled():
                self._settle_event().set()

    async def _tick(self) -> None:
        """Prove the loop runs every ``period``; each wake-up's lateness is the loop's lag."""
        while True:
            asked = time.monotonic()
            await asyncio.sleep(self.period)
            now = time.monotonic()
            if self.on_lag is not None:
                self.on_lag(max(0.0, now - asked - self.period))
            self.check(now)
