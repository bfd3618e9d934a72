"""The cluster as the agent's components see it: ownership of keys over a running ``Node``.

``prometheus.scrape`` asks one question per scrape (``owns``) and wants to hear
when the answer may have changed (``subscribe``). This adapter answers from the
node's current view on the agent's event loop, and adds what the protocol
thread cannot know: the agent's own event loop may have stalled (SIGSTOP, a
CPU-starved host), and after such a stall the view it holds is stale, so the
agent owns nothing until the protocol thread has had time to hear the news and
refute a death, instead of scraping targets the others took over meanwhile.
It also joins through HTTP push-pull (the dialer) and holds components back
until the cluster reaches ``wait_for_size`` members, as Alloy's flag does.

Progress-based demotion: the failure detector only proves that a member's
protocol thread answers; its scrape loop may be stuck behind a blocked event
loop. Each agent publishes a ``Progress`` every second from its own event loop
(loop lag, the share of its targets scraped on time), and every agent applies
one local rule: a member whose progress has not changed for
``progress_timeout`` (by the observer's own monotonic clock: clocks are never
compared across members) owns no targets in its ring. An agent that sees itself
falling behind (loop lag over ``lag_limit`` or fewer than ``on_time_min`` of its
scrapes on time) announces itself draining, and returns as a participant only
after ``healthy_hold`` seconds of healthy progress, so it does not flap.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from prometheus_client import CollectorRegistry

from agent.cluster.member import Member, Progress, Role
from agent.cluster.node import Node, View, asyncio_observer
from agent.cluster.ring import Ring
from agent.cluster.settings import Settings

# The route of the agent's HTTP server that carries push-pull frames (agent/server/peers.py).
PUSH_PULL_PATH = "/api/v0/cluster/push-pull"
PUSH_PULL_TYPE = "application/x-shoal-cluster"


async def http_dialer(addr: str, frame: bytes, timeout: float = 2.0) -> bytes:
    """Carry one sealed push-pull frame to a peer's HTTP server (its gossip port's number).

    A session per exchange: push-pull happens every few seconds, and the call
    runs on the protocol thread's own event loop, where no shared session lives.
    """
    url = f"http://{addr}{PUSH_PULL_PATH}"
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with (
        aiohttp.ClientSession(timeout=client_timeout) as session,
        session.post(url, data=frame, headers={"Content-Type": PUSH_PULL_TYPE}) as resp,
    ):
        body = await resp.read()
        if resp.status != 200:
            raise ConnectionError(f"push-pull to {addr}: HTTP {resp.status}")
        return body


def seed_of(cluster_name: str) -> int:
    """The cluster-wide scrape phase seed: the same on every agent of one cluster."""
    digest = hashlib.blake2b(b"shoal-scrape-seed\xff" + cluster_name.encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "little")


@dataclass(frozen=True)
class Options:
    """How the service joins and when it lets components own targets."""

    join: tuple[str, ...] = ()  # host:port of peers' gossip (= HTTP) ports, already resolved
    max_join_peers: int = 5  # Alloy's --cluster.max-join-peers; 0: no limit
    wait_for_size: int = 0  # own nothing until this many participants; 0: do not wait
    wait_timeout: float = 0.0  # stop waiting after this long; 0: wait forever
    # The agent's event loop silent this long counts as a stall (SIGSTOP, starvation).
    stall_threshold: float = 1.5
    # After a stall, own nothing this long: a few probe rounds to hear and refute news.
    stall_hold: float = 2.5
    tick: float = 0.25  # how often the agent's loop proves it is running
    leave_grace: float = 0.5  # role terminating gossiped this long before leaving
    progress_interval: float = 1.0  # how often this agent publishes its progress
    progress_timeout: float = 5.0  # a member whose progress is this old owns nothing
    lag_limit: float = 1.0  # this agent's loop lag (s) above which it is falling behind
    on_time_min: float = 0.5  # share of scrapes on time below which it is falling behind
    behind_checks: int = 3  # consecutive behind measurements before draining
    healthy_hold: float = 30.0  # healthy this long before draining ends
    # Draining again soon after returning doubles the hold, up to this many times healthy_hold:
    # a draining agent scrapes nothing, so its checks read healthy even while it is still starved.
    healthy_hold_max_mult: int = 8


# (scrapes on time, scrapes due) from the agent's scrape pools; the argument is the unix time
# the last stall's hold-down ended: a scrape missed before then is the stall's, not lateness.
ScrapeProgress = Callable[[float], tuple[int, int]]


class ClusterService:
    """``prometheus.scrape``'s ClusterService over a Node: name, seed, owns, owner, subscribe."""

    def __init__(
        self,
        settings: Settings,
        options: Options = Options(),
        registry: CollectorRegistry | None = None,
        dialer: Any = http_dialer,
        scrape_progress: ScrapeProgress | None = None,
    ) -> None:
        self.settings = settings
        self.options = options
        self.name = settings.name
        self.seed = seed_of(settings.cluster_name)
        self.node = Node(settings, registry=registry, dialer=dialer)
        self.log = structlog.get_logger("cluster").bind(node=settings.name)
        self._subscribers: list[Callable[[], None]] = []
        self._remove_observer: Callable[[], None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._last_tick = time.monotonic()
        self._stalled_until = 0.0
        self._size_reached = options.wait_for_size <= 0
        # Until the first join attempt ends the ring holds only us: owning by it would scrape
        # every target once at start (seen as a duplicate in a rolling restart).
        self._joining = bool(options.join)
        self.started_at = 0.0
        self.stalls = 0  # stalls of the agent's loop detected (each one held ownership back)
        self.scrape_progress = scrape_progress
        # name -> (last progress seen, monotonic time it changed), kept by the protocol thread.
        self._seen: dict[str, tuple[Progress, float]] = {}
        self._seen_lock = threading.Lock()
        self._ring = Ring((), settings.seed)
        self.demoted: frozenset[str] = frozenset()  # members owning nothing for stale progress
        self.loop_lag = 0.0
        self._behind = 0
        self._healthy_since: float | None = None
        self._hold = self.options.healthy_hold  # the current hold-down, doubled by flapping
        self._returned_at: float | None = None
        self.draining = False

    # -- lifecycle (the runtime's Services call these) --

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.node.start)
        self.started_at = time.monotonic()
        self._last_tick = self.started_at
        remove_seen = self.node.add_observer(self._record_progress)
        remove_view = self.node.add_observer(asyncio_observer(loop, self._on_view))

        def remove() -> None:
            remove_seen()
            remove_view()

        self._remove_observer = remove
        self._tasks.append(loop.create_task(self._publish_progress(), name="cluster-progress"))
        self._tasks.append(loop.create_task(self._ticker(), name="cluster-ticker"))
        if not self._size_reached:
            self._tasks.append(loop.create_task(self._wait_for_size(), name="cluster-wait"))
        if self.options.join:
            self._tasks.append(loop.create_task(self._join(), name="cluster-join"))

    async def stop(self) -> None:
        """Announce terminating, then leave: peers take our targets without waiting to suspect us."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._remove_observer is not None:
            self._remove_observer()
        with contextlib.suppress(RuntimeError):
            self.node.set_role(Role.TERMINATING)
        await asyncio.sleep(self.options.leave_grace)
        await asyncio.to_thread(self.node.stop, True)

    # -- what components ask --

    def owns(self, key: bytes) -> bool:
        if not self._can_own():
            return False
        return self._ring.owner(key) == self.name

    def owner(self, key: bytes) -> str:
        return self._ring.owner(key) or ""

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    # -- what the API shows --

    def members(self) -> tuple[Member, ...]:
        return self.node.members()

    @property
    def ring(self) -> Ring:
        """Who owns what here: the node's participants less those demoted for stale progress."""
        return self._ring

    def holding_back(self) -> str:
        """Why this agent owns nothing right now, or "" when it may own its share."""
        if self._joining:
            return "joining"
        if not self._size_reached:
            return f"waiting for {self.options.wait_for_size} members"
        if time.monotonic() < self._stalled_until:
            return "resuming after a stall, or just joined"
        return ""

    # -- internals --

    def _can_own(self) -> bool:
        now = time.monotonic()
        self._check_stall(now)
        return self._size_reached and not self._joining and now >= self._stalled_until

    def _check_stall(self, now: float) -> None:
        """The agent's loop did not run for a while: its view may be stale; own nothing for a bit.

        Subscribers hear of it on the next loop turn, not from inside ``owns`` (they call it).
        """
        silent, self._last_tick = now - self._last_tick, now
        if silent <= self.options.stall_threshold:
            return
        self.stalls += 1
        self._stalled_until = now + self.options.stall_hold
        self.log.warning("event loop stalled; owning no targets until the view is fresh",
                         silent=round(silent, 3), hold=self.options.stall_hold)
        asyncio.get_running_loop().call_soon(self._notify)

    async def _ticker(self) -> None:
        """Prove the loop runs; end a stall's hold-down with a notification so loops restart."""
        held = False
        while True:
            await asyncio.sleep(self.options.tick)
            now = time.monotonic()
            self._check_stall(now)
            holding = now < self._stalled_until
            if held and not holding:
                self.log.info("stall hold-down over; owning targets again")
                self._notify()
            held = holding
            self._update_ring()

    async def _publish_progress(self) -> None:
        """Every ``progress_interval``: measure, publish, and drain or return by the local rule."""
        loop = asyncio.get_running_loop()
        period = self.options.progress_interval
        while True:
            before = loop.time()
            await asyncio.sleep(period)
            self.loop_lag = max(0.0, loop.time() - before - period)
            since = time.time() - max(0.0, time.monotonic() - self._stalled_until)
            on_time, due = self.scrape_progress(since) if self.scrape_progress is not None else (0, 0)
            self.node.set_progress(Progress(
                scrapes_on_time=on_time, scrapes_due=due, loop_lag=self.loop_lag, timestamp=time.time()
            ))
            self._judge_self(on_time, due, loop.time())

    def _judge_self(self, on_time: int, due: int, now: float) -> None:
        if time.monotonic() < self._stalled_until + self.options.progress_interval:
            self._behind = 0  # a stall is handled by holding back, not by draining
            return
        behind = self.loop_lag > self.options.lag_limit or (
            due > 0 and on_time / due < self.options.on_time_min
        )
        self._behind = self._behind + 1 if behind else 0
        if behind:
            self._healthy_since = None
        elif self._healthy_since is None:
            self._healthy_since = now
        if not self.draining and self._behind >= self.options.behind_checks:
            self.draining = True
            flapped = self._returned_at is not None and now - self._returned_at < 4 * self._hold
            self._hold = (min(2 * self._hold, self.options.healthy_hold * self.options.healthy_hold_max_mult)
                          if flapped else self.options.healthy_hold)
            self.log.warning("falling behind; draining", loop_lag=round(self.loop_lag, 3),
                             on_time=on_time, due=due, hold=self._hold)
            self.node.set_role(Role.DRAINING)
        elif (self.draining and self._healthy_since is not None
              and now - self._healthy_since >= self._hold):
            self.draining = False
            self._returned_at = now
            self.log.info("healthy again; participating", healthy_for=self._hold)
            self.node.set_role(Role.PARTICIPANT)

    def _record_progress(self, view: View) -> None:
        """On the protocol thread: when each member's progress last changed, by our clock."""
        now = time.monotonic()
        with self._seen_lock:
            for m in view.members:
                seen = self._seen.get(m.name)
                if seen is None or seen[0] != m.progress:
                    self._seen[m.name] = (m.progress, now)

    def _update_ring(self) -> None:
        """Rebuild the ring from the view and the progress rule; notify only if owners changed."""
        now = time.monotonic()
        timeout = self.options.progress_timeout
        with self._seen_lock:
            stale = frozenset(
                name for name, (_, changed) in self._seen.items()
                if now - changed > timeout and name != self.name
            )
        owners = [m.name for m in self.node.members() if m.owns_targets and m.name not in stale]
        demoted = frozenset(
            m.name for m in self.node.members() if m.owns_targets and m.name in stale
        )
        if demoted != self.demoted:
            log = self.log.warning if demoted else self.log.info
            log("members demoted for stale progress", demoted=sorted(demoted))
            self.demoted = demoted
        if set(owners) != set(self._ring.names):
            self._ring = Ring(owners, self.settings.seed)
            self._notify()

    async def _wait_for_size(self) -> None:
        deadline = self.options.wait_timeout
        start = time.monotonic()
        while True:
            participants = sum(1 for m in self.node.members() if m.owns_targets)
            if participants >= self.options.wait_for_size:
                self.log.info("cluster reached its minimum size", size=participants)
                break
            if deadline > 0 and time.monotonic() - start >= deadline:
                self.log.warning("cluster did not reach its minimum size; going on",
                                 size=participants, wanted=self.options.wait_for_size)
                break
            await asyncio.sleep(0.2)
        self._size_reached = True
        self._notify()  # the ring may not change, but what we may own did

    async def _join(self) -> None:
        """Join through the peers given; those that did not answer are retried by the node."""
        peers = [a for a in self.options.join if a != self.node.address]
        if self.options.max_join_peers > 0:
            peers = peers[: self.options.max_join_peers]
        while True:
            try:
                joined = await asyncio.to_thread(self.node.join, peers)
            except Exception as exc:  # a bad peer must not stop the agent
                self.log.warning("cluster join failed", err=str(exc))
                joined = 0
            if self._joining:
                self._joining = False  # answered or not, the first attempt is over: own by the view
                if joined:
                    # The peers may still hold an earlier instance of us as left or dead and scrape
                    # our share: hold back as after a stall while our alive news spreads.
                    self._stalled_until = time.monotonic() + self.options.stall_hold
                self._notify()
            if joined or not peers:
                self.log.info("joined the cluster", answered=joined, tried=len(peers))
                return
            # Nobody answered yet (they may be starting too): try again soon.
            await asyncio.sleep(min(2.0, self.settings.rejoin_interval))

    def _on_view(self, _view: View) -> None:
        self._update_ring()

    def _notify(self) -> None:
        for cb in list(self._subscribers):
            try:
                cb()
            except Exception:
                self.log.exception("cluster subscriber failed")

