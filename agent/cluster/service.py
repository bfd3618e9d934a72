"""The cluster as the agent's components see it: ownership of keys over a running ``Node``.

``prometheus.scrape`` asks one question per scrape (``owns``) and wants to hear
when the answer may have changed (``subscribe``). This adapter answers from the
node's current view on the agent's event loop, and adds what the protocol
thread cannot know: the agent's own event loop may have stalled (SIGSTOP, a
CPU-starved host), and after a stall long enough for peers to have taken its
targets over the view it holds is stale, so the agent owns nothing until the
protocol thread has had time to hear the news and refute a death, instead of
scraping targets the others took over meanwhile (stalls come from the process'
loop clock, agent/loopclock.py).
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
after ``healthy_hold`` seconds of healthy progress, so it does not flap. The
progress also carries the WAL's fsync time and the remote-write lag
(``write_progress``), and every agent demotes a member whose own figures say it
cannot keep up, by one rule.

Beyond ownership: each clustered component reports its target keys
(``report_targets``), gossiped as a digest and compared with every peer's, so
agents that see different targets are reported instead of silently splitting
them wrong; ``owns``/``owner`` take a target's node for node affinity; the
gossip key file is read again when it changes (rotation without a restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import structlog
from prometheus_client import CollectorRegistry

from agent.cluster.keyfile import KeyFileError, read_keys, stamp
from agent.cluster.member import Liveness, Member, Progress, Role, TargetDigest
from agent.cluster.messages import MAX_DIGESTS
from agent.cluster.node import Node, View, asyncio_observer
from agent.cluster.peertls import PeerTLS, ReloadingTLS
from agent.cluster.ring import Plan, Ring, plan
from agent.cluster.settings import Settings
from agent.loopclock import HANDOFFS, LoopClock, Stall

# The route of the agent's HTTP server that carries push-pull frames (agent/server/peers.py).
PUSH_PULL_PATH = "/api/v0/cluster/push-pull"
PUSH_PULL_TYPE = "application/x-shoal-cluster"


class HTTPDialer:
    """Carry one sealed push-pull frame to a peer's HTTP server (its gossip port's number),
    over HTTPS with our certificate when peer TLS is configured.

    A session per exchange: push-pull happens every few seconds, and the call
    runs on the protocol thread's own event loop, where no shared session lives.
    """

    def __init__(self, tls: PeerTLS | ReloadingTLS | None = None) -> None:
        # The client context is read at each exchange: rotated certificates apply at once.
        self._tls = ReloadingTLS(tls) if isinstance(tls, PeerTLS) else tls

    async def __call__(self, addr: str, frame: bytes, timeout: float = 2.0) -> bytes:
        scheme = "https" if self._tls is not None else "http"
        extra: dict[str, Any] = {}
        if self._tls is not None:
            extra["ssl"] = self._tls.client
            if self._tls.server_name:
                extra["server_hostname"] = self._tls.server_name
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        async with (
            aiohttp.ClientSession(timeout=client_timeout) as session,
            session.post(f"{scheme}://{addr}{PUSH_PULL_PATH}", data=frame,
                         headers={"Content-Type": PUSH_PULL_TYPE}, **extra) as resp,
        ):
            body = await resp.read()
            if resp.status != 200:
                raise ConnectionError(f"push-pull to {addr}: HTTP {resp.status}")
            return body


def _behind_why(p: Progress) -> str:
    return f"behind: {p.scrapes_on_time} of {p.scrapes_due} scrapes on time, loop lag {p.loop_lag:.2f}s"


def component_hash(component_id: str) -> int:
    """The 32-bit name of a clustered component on the wire."""
    return int.from_bytes(
        hashlib.blake2b(component_id.encode(), digest_size=4, person=b"shoal-comp").digest(), "little"
    )


def target_set_digest(keys: Iterable[bytes]) -> tuple[int, int]:
    """(64-bit digest, count) of a set of target keys; the same set gives the same digest."""
    h = hashlib.blake2b(digest_size=8, person=b"shoal-targets")
    n = 0
    for key in sorted(set(keys)):
        h.update(len(key).to_bytes(4, "little"))
        h.update(key)
        n += 1
    return int.from_bytes(h.digest(), "little"), n


@dataclass
class _Mismatch:
    """One clustered component's disagreement with peers, as this agent last judged it."""

    peers: dict[str, str]  # peer name -> what differs ("12 targets", "missing")
    since: float  # monotonic time the set of disagreeing peers became non-empty
    logged: float = -1e9  # monotonic time of the last warning


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
    # The agent's event loop silent this long counts as a stall (SIGSTOP, starvation); the
    # threshold of the service's own clock, and of `shoal run`'s shared one.
    stall_threshold: float = 1.5
    # After a stall long enough for peers to have taken our targets, own nothing this long: a
    # few probe rounds to hear and refute news.
    stall_hold: float = 2.5
    # How long our first progress after a stall may take to reach the peers (gossip rounds):
    # added to the stall when judging whether a peer can have demoted us meanwhile.
    news_margin: float = 1.0
    tick: float = 0.25  # how often the agent's loop proves it is running
    leave_grace: float = 0.5  # role terminating gossiped this long before leaving
    progress_interval: float = 1.0  # how often this agent publishes its progress
    progress_timeout: float = 5.0  # a member whose progress is this old owns nothing
    lag_limit: float = 1.0  # this agent's loop lag (s) above which it is falling behind
    # Share of due scrapes on time below which it is falling behind. A healthy agent starts
    # nearly every tick on time (a slow or failing target still starts); a 2 % CPU quota at a
    # 1 s interval left 45-65 % on time (tests/cluster/test_starve.py).
    on_time_min: float = 0.8
    behind_checks: int = 3  # consecutive behind measurements before draining
    healthy_hold: float = 30.0  # healthy this long before draining ends
    # Looks --cluster.join-addresses up again (DNS A/SRV) before each rejoin; None: keep `join`.
    resolve_join: Callable[[], list[str]] | None = field(default=None, compare=False)
    key_file: str = ""  # --cluster.gossip-key-file, read again when it changes
    key_check: float = 5.0  # how often the key file is checked for a change
    tls: PeerTLS | None = None  # push-pull over HTTPS (--cluster.enable-tls)
    tls_check: float = 5.0  # how often the TLS files are checked for a change (rotation)
    # A target-set mismatch lasting this long is logged (discovery on two agents is not in step
    # to the millisecond); the metric and the API show it at once.
    mismatch_grace: float = 10.0
    mismatch_log_every: float = 60.0  # at most one mismatch line per component this often
    # Demotion by the figures a member gossips (the same rule on every agent, itself included):
    # its WAL fsync stuck this long (the "I/O wait over 20 s", caught earlier), or its
    # remote-write lag over both this limit and this multiple of the participants' median (a
    # backend outage that makes every agent lag demotes nobody). It returns after healthy_hold.
    fsync_limit: float = 10.0
    rw_lag_limit: float = 120.0
    rw_lag_factor: float = 4.0
    # Bad figures must last this long (observer's clock) before they demote: lags rise together
    # in a backend outage but reach each agent's gossip up to a second or two apart.
    figures_grace: float = 3.0
    # Draining again soon after returning doubles the hold, up to this many times drain_hold.
    healthy_hold_max_mult: int = 8
    # A draining agent scrapes nothing, so its checks read healthy even while it is still
    # starved: it returns only after drain_hold seconds in which a CPU canary (spinning
    # canary_cpu seconds of thread CPU time each progress interval) got at least canary_min of
    # the wall time it took, and then with a part of its share (the ramp, below).
    drain_hold: float = 10.0
    canary_cpu: float = 0.01
    canary_min: float = 0.2
    # The ramp: an agent coming back (from draining, from a stall longer than progress_timeout,
    # or joining peers at start) owns ramp_first of its ring share, doubled every ramp_step
    # seconds while its checks and the canary stay healthy; 1 turns the ramp off. A larger
    # share is announced to apply from ramp_grace seconds later (Progress.ramp_at): every agent,
    # this one included, switches at that instant, so the slot before it is the old owner's and
    # the slot from it the new owner's. The grace covers the news reaching every peer: progress
    # is published at most once a second (metadata_min_interval) and gossiped every 0.2 s to
    # three peers, so 1 s was too short under load; a peer hearing after the instant lets go
    # late, which costs a duplicate scrape, never a gap. A smaller share applies at once.
    ramp_first: float = 0.125
    ramp_step: float = 10.0
    ramp_grace: float = 3.0
    # A peer's switch time further ahead than this (by our clock, when first heard) is pulled
    # in to it and counted: a bad value or a clock far ahead would otherwise keep its old share
    # in force for as long (duplicates meanwhile), and its pending ring with it.
    ramp_ahead_max: float = 30.0
    # For this long after start the on-time figure is not published (0 due): the first scrapes
    # create every series and overrun their ticks (the heavy workload's first seconds: 79 % on
    # time, once), which is a start, not a starvation. Loop lag and stale progress still count.
    start_grace: float = 30.0


CANARY_READINGS = 5  # one per progress interval

# (scrapes on time, scrapes due) from the agent's scrape pools; the argument is the unix time
# the last stall's hold-down ended: a scrape missed before then is the stall's, not lateness.
ScrapeProgress = Callable[[float], tuple[int, int]]
# (WAL fsync seconds, remote-write lag seconds), the worst over the agent's remote_write components.
WriteProgress = Callable[[], tuple[float, float]]


def behind(p: Progress, options: Options) -> bool:
    """Whether one published progress says its member is falling behind.

    The one rule every agent applies to every member's publications (its own included, so
    every view agrees without a vote): loop lag over ``lag_limit``, or fewer than
    ``on_time_min`` of its due scrapes on time. A member ``behind_checks`` publications
    running behind owns nothing in any ring.
    """
    if p.loop_lag > options.lag_limit:
        return True
    return p.scrapes_due > 0 and p.scrapes_on_time < options.on_time_min * p.scrapes_due


def canary(cpu: float) -> float:
    """Spin ``cpu`` seconds of this thread's CPU time; the share of wall time it got.

    An idle event loop is punctual even on a starved host (it asks for almost nothing), so a
    draining agent proves it could work by working a little: near 1 on a healthy host, about
    the quota under a cgroup CPU quota, about 1 - steal on a stolen-from VM.
    """
    wall, start = time.perf_counter(), time.thread_time()
    while time.thread_time() - start < cpu:
        sum(range(100))
    return (time.thread_time() - start) / max(1e-9, time.perf_counter() - wall)


class ClusterService:
    """``prometheus.scrape``'s ClusterService over a Node: name, seed, owns, owner, subscribe."""

    def __init__(
        self,
        settings: Settings,
        options: Options = Options(),
        registry: CollectorRegistry | None = None,
        dialer: Any = "http",
        scrape_progress: ScrapeProgress | None = None,
        write_progress: WriteProgress | None = None,
    ) -> None:
        self.settings = settings
        self.options = options
        self.name = settings.name
        self.seed = seed_of(settings.cluster_name)
        # The peer TLS contexts in force, shared by the dialer and the HTTP server.
        self.tls = ReloadingTLS(options.tls) if options.tls is not None else None
        if dialer == "http":  # the default: push-pull through the peers' HTTP servers
            dialer = HTTPDialer(self.tls)
        self.node = Node(settings, registry=registry, dialer=dialer,
                         resolve_seeds=self._seeds_resolver())
        self._key_stamp = stamp(options.key_file) if options.key_file else (0, 0, 0)
        self.log = structlog.get_logger("cluster").bind(node=settings.name)
        self._subscribers: list[Callable[[], None]] = []
        self._remove_observer: Callable[[], None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # The loop's stalls: `shoal run` hands in the process' clock; alone, the service has its own.
        self.clock = self._own_clock = LoopClock(threshold=options.stall_threshold,
                                                 period=min(options.tick, options.stall_threshold / 2))
        self._unsubscribe_clock: Callable[[], None] | None = None
        self._stalled_until = 0.0
        self._size_reached = options.wait_for_size <= 0
        # Until the first join attempt ends the ring holds only us: owning by it would scrape
        # every target once at start (seen as a duplicate in a rolling restart).
        self._joining = bool(options.join)
        self.started_at = 0.0
        self.stalls = 0  # stalls of the agent's loop detected (each one held ownership back)
        self.scrape_progress = scrape_progress
        self.write_progress = write_progress
        # name -> monotonic time its gossiped figures were last judged bad, and why.
        self._bad_figures: dict[str, tuple[float, str]] = {}
        self._bad_since: dict[str, float] = {}  # name -> when its figures turned bad
        self.demoted_why: dict[str, str] = {}
        # name -> (last progress seen, monotonic time it changed), kept by the protocol thread.
        self._seen: dict[str, tuple[Progress, float]] = {}
        # name -> how many of its publications running were behind (the peers' rule).
        self._behind_runs: dict[str, int] = {}
        self._seen_lock = threading.Lock()
        # The ring in force and those scheduled at members' announced switch times.
        self._plan = Plan(Ring((), settings.seed))
        # name -> (the switch time it gossiped, the one we use: clamped to ramp_ahead_max).
        self._switch: dict[str, tuple[float, float]] = {}
        self.demoted: frozenset[str] = frozenset()  # members owning nothing for stale progress
        self.loop_lag = 0.0
        self._behind = 0
        self._healthy_since: float | None = None
        self._hold = self.options.healthy_hold  # the current hold-down, doubled by flapping
        self._returned_at: float | None = None
        self.draining = False
        # The ramp: the share of our ring share we announce, the one before it and the unix time
        # it applies from (0: now), exactly as we gossip them; when it last changed.
        first = options.ramp_first if options.join else 1.0
        self.weight = self._ramp_from = min(1.0, max(0.0, first))
        self._ramp_at = 0.0
        # Joining peers: our first share is scheduled like a ramp step, from nothing, once the
        # first join attempt ends (``_join``); until then it is announced for later still.
        self._join_pending = bool(options.join) and self.weight < 1.0
        if self._join_pending:
            self._ramp_from = 0.0
        self._last_progress = Progress()
        self._leaving = False  # hand_over announced our share's end: we are stopping
        self._ramp_changed = 0.0
        # The canary's last readings (measured only while draining or ramping); their median
        # is judged, so one reading on a busy machine does not restart a hold.
        self._canary: deque[float] = deque(maxlen=CANARY_READINGS)
        # component id -> its digest, as announced; and what disagrees, as judged here.
        self._digests: dict[str, TargetDigest] = {}
        self.mismatches: dict[str, _Mismatch] = {}

    # -- lifecycle (the runtime's Services call these) --

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.node.start)
        self.started_at = time.monotonic()
        self._ramp_changed = self.started_at
        if self._join_pending:
            # Before joining: peers must never see us take a share before we can scrape it (we
            # own nothing while joining and for stall_hold after it), so it is announced from
            # well ahead, and brought forward when the first join attempt ends.
            self._ramp_at = time.time() + self.options.ramp_ahead_max / 2
        if self.weight < 1.0:
            self.node.set_progress(self._ramp_fields(Progress(timestamp=time.time())))
        if self.clock is self._own_clock:
            await self.clock.start()
        self.clock.check()  # the time the node took to start is no stall
        self._unsubscribe_clock = self.clock.subscribe(self._on_stall, HANDOFFS)
        remove_seen = self.node.add_observer(self._record_progress)
        remove_view = self.node.add_observer(asyncio_observer(loop, self._on_view))

        def remove() -> None:
            remove_seen()
            remove_view()

        self._remove_observer = remove
        if self._digests:
            self._announce_digests()
        self._tasks.append(loop.create_task(self._publish_progress(), name="cluster-progress"))
        self._tasks.append(loop.create_task(self._ticker(), name="cluster-ticker"))
        if not self._size_reached:
            self._tasks.append(loop.create_task(self._wait_for_size(), name="cluster-wait"))
        if self.options.join:
            self._tasks.append(loop.create_task(self._join(), name="cluster-join"))
        if self.options.key_file:
            self._tasks.append(loop.create_task(self._watch_keys(), name="cluster-keys"))
        if self.tls is not None:
            watch = self.tls.watch(self.options.tls_check, self.node.metrics.tls_reloads)
            self._tasks.append(loop.create_task(watch, name="cluster-tls"))

    async def hand_over(self) -> None:
        """Before the components stop (a graceful shutdown): give our whole share away at an
        announced instant, ``ramp_grace`` ahead, and keep scraping until it. The others take each
        target from the slot at that instant, so a restart or a rolling upgrade leaves no slot
        unscraped (stopping the scrapers first and leaving afterwards left every slot between
        to nobody). Nothing to hand over when we own nothing or nobody else participates."""
        others = [m for m in self.node.members() if m.owns_targets and not m.is_self]
        if self.weight <= 0.0 or not others or not self._can_own():
            return
        now = time.time()
        self._leaving = True
        self._ramp_from = self._ramp_fields(Progress()).weight_at(now)
        self.weight, self._ramp_at = 0.0, now + self.options.ramp_grace
        self.log.info("handing our share over before stopping", applies_in=self.options.ramp_grace)
        self.node.set_progress(self._ramp_fields(self._last_progress))
        self._update_ring()
        await asyncio.sleep(self.options.ramp_grace + 0.1)

    async def stop(self) -> None:
        """Announce terminating, then leave: peers take our targets without waiting to suspect us."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._unsubscribe_clock is not None:
            self._unsubscribe_clock()
        if self.clock is self._own_clock:
            await self.clock.stop()
        if self._remove_observer is not None:
            self._remove_observer()
        with contextlib.suppress(RuntimeError):
            self.node.set_role(Role.TERMINATING)
        await asyncio.sleep(self.options.leave_grace)
        await asyncio.to_thread(self.node.stop, True)

    # -- what components ask --

    def owns(self, key: bytes, node: str = "", at: float | None = None) -> bool:
        """Whether this agent scrapes the target; ``node`` and ``at``: see ``owner``."""
        if not self._can_own(at):
            return False
        return self.owner(key, node, at) == self.name

    def owner(self, key: bytes, node: str = "", at: float | None = None) -> str:
        """Who scrapes the target with this key (at unix time ``at``, a scrape slot's: a
        member's grown share applies from the instant it announced; None: now).

        ``node`` (node-affine targets: the Kubernetes node a pod or kubelet runs on) names
        its owner when an agent of that name is a healthy participant in our ring; otherwise
        the ring decides, so the target falls back to the others while that agent is
        demoted, draining, dead or absent. Every agent applies the same rule to the same
        view, so they agree without talking about it.
        """
        ring = self._plan.ring(at)
        if node and node in ring.whole:
            return node
        return ring.owner(key) or ""

    def switches(self) -> tuple[float, ...]:
        """The unix times at which a scheduled share change moves targets, earliest first."""
        return self._plan.switches()

    def report_targets(self, component_id: str, keys: Iterable[bytes]) -> None:
        """A clustered component's current target keys: gossiped as a digest and compared."""
        digest, count = target_set_digest(keys)
        entry = TargetDigest(component_hash(component_id), digest, count)
        if self._digests.get(component_id) != entry:
            self._digests[component_id] = entry
            self._announce_digests()

    def forget_targets(self, component_id: str) -> None:
        """The component left or stopped clustering: nothing to compare for it any more."""
        if self._digests.pop(component_id, None) is not None:
            self._announce_digests()
        self.mismatches.pop(component_id, None)
        self._forget_mismatch_metric(component_id)

    def target_sets(self) -> dict[str, TargetDigest]:
        """This agent's clustered components and what each sees."""
        return dict(self._digests)

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
        """Who owns what here now: the node's participants less those demoted for stale
        progress, weighted by the shares in force now."""
        return self._plan.current

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

    def _announce_digests(self) -> None:
        chosen = sorted(self._digests.items())[:MAX_DIGESTS]
        if len(self._digests) > MAX_DIGESTS:
            self.log.warning("more clustered components than target digests gossiped; "
                             "the rest are not compared", components=len(self._digests),
                             compared=MAX_DIGESTS)
        with contextlib.suppress(RuntimeError):  # not started yet: announced at start
            self.node.set_digests(tuple(d for _, d in chosen))

    def _forget_mismatch_metric(self, component_id: str) -> None:
        with contextlib.suppress(KeyError):
            self.node.metrics.target_set_mismatch.remove(component_id)

    def _compare_target_sets(self, members: tuple[Member, ...]) -> None:
        """Which live peers see other targets than we do, per clustered component.

        A peer missing a component we cluster counts too: the ring gives it a share of
        targets it will never scrape.
        """
        now = time.monotonic()
        peers = [m for m in members
                 if not m.is_self and m.liveness in (Liveness.ALIVE, Liveness.SUSPECT)]
        for component_id, mine in sorted(self._digests.items())[:MAX_DIGESTS]:
            differ: dict[str, str] = {}
            for m in peers:
                theirs = next((d for d in m.digests if d.component == mine.component), None)
                if theirs is None:
                    differ[m.name] = "missing"
                elif theirs.digest != mine.digest:
                    differ[m.name] = f"{theirs.targets} targets"
            self.node.metrics.target_set_mismatch.labels(component_id).set(len(differ))
            self._judge_mismatch(component_id, mine, differ, now)

    def _judge_mismatch(
        self, component_id: str, mine: TargetDigest, differ: dict[str, str], now: float
    ) -> None:
        known = self.mismatches.get(component_id)
        if not differ:
            if known is not None:
                if known.logged > known.since:
                    self.log.info("target sets agree again", component_id=component_id,
                                  targets=mine.targets)
                del self.mismatches[component_id]
            return
        if known is None:
            known = self.mismatches[component_id] = _Mismatch(differ, now)
        known.peers = differ
        opts = self.options
        if now - known.since >= opts.mismatch_grace and now - known.logged >= opts.mismatch_log_every:
            known.logged = now
            self.log.warning(
                "peers see other targets for a clustered component; some targets may be scraped "
                "twice or never", component_id=component_id, targets_here=mine.targets,
                peers=dict(sorted(differ.items())),
            )

    def _can_own(self, at: float | None = None) -> bool:
        """Whether we may own targets now, or (``at``, unix time) in a slot that late: a slot
        after the hold-down ends is ours to prepare for (the pool starts its loop early), and
        is asked about again, with a fresher view, when it comes."""
        now = time.monotonic()
        self.clock.check(now)
        if not self._size_reached or self._joining:
            return False
        return now >= self._stalled_until or (
            at is not None and at - time.time() >= self._stalled_until - now)

    def _on_stall(self, stall: Stall) -> Awaitable[None] | None:
        """The agent's loop did not run for a while: hand off, if a peer can have taken over.

        Called by the clock as it finds the stall (inside ``owns`` perhaps); the handoff (a
        notification: the scrape pools rebalance and write markers) runs on the next loop turn,
        and the clock lets the remote-write queues send only once it is done. A stall too short
        for any peer to have demoted us changes nothing: holding back would make every pool
        write handoff markers, and the queues drop samples nobody else wrote.
        """
        self.stalls += 1
        if not self._takeover_possible(stall):
            self._stalled_until = max(self._stalled_until, stall.ended)  # its missed scrapes are not lateness
            self.log.info("event loop stalled briefly; no peer can have taken our targets",
                          silent=round(stall.seconds, 3))
            return None
        self._stalled_until = stall.ended + self.options.stall_hold
        self.log.warning("event loop stalled; owning no targets until the view is fresh",
                         silent=round(stall.seconds, 3), hold=self.options.stall_hold)
        return self._hand_off_after_stall()

    async def _hand_off_after_stall(self) -> None:
        self._notify()

    def _takeover_possible(self, stall: Stall) -> bool:
        """Whether a peer can have owned our targets during ``stall``, by the rules peers apply.

        Peers demote a member whose progress has not changed for ``progress_timeout`` (their
        clocks: durations only); ours last changed when we last published, and our next
        publication reaches them up to ``news_margin`` after the stall ends. The failure
        detector declares a silent member dead no sooner than the shortest suspicion timeout.
        Both assume the peers run the same settings as this agent.
        """
        opts = self.options
        with self._seen_lock:
            mine = self._seen.get(self.name)
        published = min(mine[1], stall.began) if mine is not None else stall.began
        if stall.ended + opts.news_margin - published >= opts.progress_timeout:
            return True
        shortest, _ = self.settings.suspicion_bounds(max(1, len(self.node.members())))
        return stall.seconds + opts.news_margin >= shortest

    async def _ticker(self) -> None:
        """Rebuild the ring; end a stall's hold-down with a notification so loops restart."""
        held = False
        while True:
            await asyncio.sleep(self.options.tick)
            now = time.monotonic()
            self.clock.check(now)
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
            if time.monotonic() - self.started_at < self.options.start_grace:
                on_time = due = 0
            fsync, rw_lag = self._write_figures()
            if self.draining or self.weight < 1.0:
                self._canary.append(canary(self.options.canary_cpu))
            if self.loop_lag > self.options.progress_timeout:
                # Silent long enough for the peers to have taken our share: come back gradually.
                self._set_weight(min(self.weight, self.options.ramp_first), "long stall")
            progress = Progress(
                scrapes_on_time=on_time, scrapes_due=due, loop_lag=self.loop_lag,
                wal_fsync=fsync, remote_write_lag=rw_lag, timestamp=time.time(),
            )
            self._judge_self(progress, loop.time())
            self._last_progress = progress
            self.node.set_progress(self._ramp_fields(progress))

    def _ramp_fields(self, p: Progress) -> Progress:
        """``p`` with our share as we announce it (the one before it until the switch)."""
        return replace(p, ramp_left=1.0 - self.weight, ramp_at=self._ramp_at,
                       ramp_from=self._ramp_from)

    @property
    def canary_share(self) -> float:
        """The median of the canary's last readings; 1 when none were taken."""
        readings = sorted(self._canary)
        return readings[len(readings) // 2] if readings else 1.0

    def _set_weight(self, weight: float, why: str) -> None:
        """Announce a new share: a larger one from ``ramp_grace`` later, for every agent at the
        same instant (the others keep scraping until then); a smaller one at once (letting go
        early costs nothing but the peers' duplicates until they hear)."""
        weight = min(1.0, max(0.0, weight))
        if weight == self.weight:
            return
        now = time.time()
        if weight > self.weight:
            self._ramp_from = Progress(ramp_left=1.0 - self.weight, ramp_at=self._ramp_at,
                                       ramp_from=self._ramp_from).weight_at(now)
            self._ramp_at = now + self.options.ramp_grace
        else:
            self._ramp_from, self._ramp_at = weight, 0.0
        self.log.info("ring share changed", weight=weight, was=self.weight, why=why,
                      applies_in=round(max(0.0, self._ramp_at - now), 3))
        self.weight = weight
        self._ramp_changed = time.monotonic()
        self._update_ring()

    def _write_figures(self) -> tuple[float, float]:
        if self.write_progress is None:
            return 0.0, 0.0
        try:
            fsync, lag = self.write_progress()
        except Exception:  # a component's bug must not stop the proof of progress
            self.log.exception("reading WAL and remote-write progress failed")
            return 0.0, 0.0
        return max(0.0, float(fsync)), max(0.0, float(lag))

    def _judge_figures(self, members: tuple[Member, ...], now: float) -> dict[str, str]:
        """Members whose own figures say they cannot keep up, and why; held for healthy_hold."""
        live = [m for m in members if m.owns_targets]
        lags = sorted(m.progress.remote_write_lag for m in live)
        median = lags[(len(lags) - 1) // 2] if lags else 0.0  # the lower one: two members work
        opts = self.options
        for m in live:
            p = m.progress
            why = ""
            if p.wal_fsync > opts.fsync_limit:
                why = f"WAL fsync {p.wal_fsync:.1f}s"
            elif p.remote_write_lag > max(opts.rw_lag_limit, opts.rw_lag_factor * median):
                why = f"remote-write lag {p.remote_write_lag:.0f}s (median {median:.0f}s)"
            if why:
                since = self._bad_since.setdefault(m.name, now)
                if now - since >= opts.figures_grace:
                    self._bad_figures[m.name] = (now, why)
            else:
                self._bad_since.pop(m.name, None)
        names = {m.name for m in members}
        for table in (self._bad_figures, self._bad_since):
            for name in [n for n in table if n not in names]:
                del table[name]
        return {name: why for name, (at, why) in self._bad_figures.items()
                if now - at < opts.healthy_hold}

    def _judge_self(self, p: Progress, now: float) -> None:
        """Drain when behind; return after a proven-healthy hold with part of the share; ramp up.

        ``now`` is the event loop's clock. Peers reach the same verdict on the same publications
        (``behind``); draining says it to them at once, and keeps us out while our checks, with
        nothing due, read healthy.
        """
        opts = self.options
        if time.monotonic() < self._stalled_until + opts.progress_interval:
            self._behind = 0  # a stall is handled by holding back, not by draining
            return
        if self._leaving:
            return  # our share is handed over (hand_over): no ramp, no drain
        late = behind(p, opts)
        self._behind = self._behind + 1 if late else 0
        healthy = not late and self.canary_share >= opts.canary_min
        if not healthy:
            self._healthy_since = None
        elif self._healthy_since is None:
            self._healthy_since = now
        if (not self.draining and self._behind >= opts.behind_checks
                and self._late(self.node.members(), me_too=True)):
            self.draining = True
            flapped = self._returned_at is not None and now - self._returned_at < 4 * self._hold
            self._hold = (min(2 * self._hold, opts.drain_hold * opts.healthy_hold_max_mult)
                          if flapped else opts.drain_hold)
            self.log.warning("falling behind; draining", loop_lag=round(p.loop_lag, 3),
                             on_time=p.scrapes_on_time, due=p.scrapes_due, hold=self._hold)
            self._canary.clear()  # the hold is judged on readings taken while draining
            self._set_weight(0.0, "draining")
            self.node.set_role(Role.DRAINING)
        elif (self.draining and self._healthy_since is not None
              and now - self._healthy_since >= self._hold):
            self.draining = False
            self._returned_at = now
            self.log.info("healthy again; participating", healthy_for=self._hold,
                          canary=round(self.canary_share, 3))
            self._set_weight(opts.ramp_first, "returning")
            self.node.set_role(Role.PARTICIPANT)
        elif (not self.draining and self.weight < 1.0 and self._healthy_since is not None
              and time.time() >= self._ramp_at  # one scheduled switch at a time
              and time.monotonic() - self._ramp_changed >= opts.ramp_step
              and now - self._healthy_since >= opts.ramp_step):
            self._set_weight(2 * max(self.weight, opts.ramp_first / 2), "ramp step")

    def _late(self, members: tuple[Member, ...], me_too: bool = False) -> dict[str, Progress]:
        """Participants ``behind_checks`` publications running behind, with the last one
        (``me_too``: counting this agent among them, as it judges itself before publishing).

        None when the latest publication of more than half of two or more participants is
        behind: that is an overload of the whole cluster, not one member starved, and moving
        targets onto the rest would make it worse. (The latest, not a run: a member about to
        drain itself must see the others falling behind with it before they are all out.)
        """
        with self._seen_lock:
            runs = {name: n for name, n in self._behind_runs.items() if name in self._seen}
            late = {name: self._seen[name][0] for name, n in runs.items()
                    if n >= self.options.behind_checks}
        now_behind = {name for name, n in runs.items() if n > 0}
        if me_too:
            late.setdefault(self.name, Progress())
            now_behind.add(self.name)
        live = {m.name for m in members if m.owns_targets}
        if live and live <= late.keys():
            # Demoting (or draining) every participant, a lone agent included, would leave the
            # targets to nobody: late scrapes are better than none.
            return {}
        return {} if len(live) > 1 and 2 * len(now_behind & live) > len(live) else late

    def _record_progress(self, view: View) -> None:
        """On the protocol thread: when each member's progress last changed, by our clock, and
        the switch time we use for its share (a new one pulled in to ``ramp_ahead_max``)."""
        now = time.monotonic()
        clamped: list[tuple[str, float]] = []
        with self._seen_lock:
            for m in view.members:
                seen = self._seen.get(m.name)
                if seen is None or seen[0] != m.progress:
                    self._seen[m.name] = (m.progress, now)
                    runs = self._behind_runs.get(m.name, 0)
                    self._behind_runs[m.name] = runs + 1 if behind(m.progress, self.options) else 0
                raw = m.progress.ramp_at
                if not m.is_self and self._switch.get(m.name, (None,))[0] != raw:
                    at = self._clamp_switch(raw)
                    self._switch[m.name] = (raw, at)
                    if at != raw:
                        clamped.append((m.name, raw))
        for name, raw in clamped:
            self.node.metrics.ramp_clamped.inc()
            self.log.warning("a member's share switch time is too far ahead (a bad value or a "
                             "clock far ahead of ours); using the longest allowed",
                             member=name, ahead=round(raw - time.time(), 1),
                             allowed=self.options.ramp_ahead_max)

    def _clamp_switch(self, at: float) -> float:
        return min(at, time.time() + self.options.ramp_ahead_max)

    def _share(self, m: Member) -> Progress:
        """A member's announced shares with the switch time we use (ours as we announce them)."""
        if m.is_self:
            return self._ramp_fields(Progress())
        with self._seen_lock:
            raw, at = self._switch.get(m.name, (None, 0.0))
        if raw != m.progress.ramp_at:  # not recorded yet: the same rule
            at = self._clamp_switch(m.progress.ramp_at)
        return replace(m.progress, ramp_at=at)

    def _update_ring(self) -> None:
        """Rebuild the ring from the view and the progress rule; notify only if owners changed."""
        now = time.monotonic()
        opts = self.options
        with self._seen_lock:
            stale = frozenset(
                name for name, (_, changed) in self._seen.items()
                if now - changed > opts.progress_timeout and name != self.name
            )
        members = self.node.members()
        why = {name: _behind_why(p) for name, p in self._late(members).items()}
        why.update({name: "progress stale" for name in stale})
        why.update(self._judge_figures(members, now))
        owners = [m.name for m in members if m.owns_targets and m.name not in why]
        demoted = frozenset(m.name for m in members if m.owns_targets and m.name in why)
        self.demoted_why = {name: why[name] for name in demoted}
        if demoted != self.demoted:
            log = self.log.warning if demoted else self.log.info
            log("members demoted for their progress", demoted=self.demoted_why)
            self.demoted = demoted
        shares = {m.name: self._share(m) for m in members if m.name in owners}
        new = plan(owners, self.settings.seed, {n: p.weight_at for n, p in shares.items()},
                   (p.ramp_at for p in shares.values()), time.time())
        if not new.same_as(self._plan):
            self._plan = new
            self._notify()
        if self._digests:
            self._compare_target_sets(members)

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

    def _seeds_resolver(self) -> Callable[[], list[str]] | None:
        """The join addresses looked up again, cut to ``max_join_peers`` as at start."""
        resolve = self.options.resolve_join
        if resolve is None:
            return None
        limit = self.options.max_join_peers

        def seeds() -> list[str]:
            found = resolve()
            return found[:limit] if limit > 0 else found

        return seeds

    async def _watch_keys(self) -> None:
        """Rotation without a restart: read the key file again when it changes.

        A file that cannot be used keeps the keys in force (counted, logged without content).
        """
        path = self.options.key_file
        while True:
            await asyncio.sleep(self.options.key_check)
            now = stamp(path)
            if now == self._key_stamp:
                continue
            self._key_stamp = now
            try:
                keys = await asyncio.to_thread(read_keys, path)
            except KeyFileError as exc:
                self.node.metrics.key_reloads.labels("error").inc()
                self.log.error("gossip key file not usable; keeping the keys in force", err=str(exc))
                continue
            self.node.set_keys(keys)
            self.node.metrics.key_reloads.labels("ok").inc()
            self.log.info("gossip keys reloaded", keys=len(keys))

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
                self._schedule_first_share(joined > 0)
                self._notify()
            if joined or not peers:
                self.log.info("joined the cluster", answered=joined, tried=len(peers))
                return
            # Nobody answered yet (they may be starting too): try again soon.
            await asyncio.sleep(min(2.0, self.settings.rejoin_interval))

    def _schedule_first_share(self, joined: bool) -> None:
        """The first join attempt ended: our first share applies once we may scrape by it (after
        the hold-down, and not before the peers can have heard: ramp_grace), or now when nobody
        answered (then there is nobody to take it from). Bringing the switch forward is safe:
        a peer that hears late keeps scraping our share a little longer (duplicates)."""
        if not self._join_pending:
            return
        self._join_pending = False
        opts = self.options
        delay = max(opts.stall_hold, opts.ramp_grace) if joined else 0.0
        self._ramp_at = min(self._ramp_at, time.time() + delay)
        self._ramp_changed = time.monotonic()
        self.node.set_progress(self._ramp_fields(self._last_progress))
        self._update_ring()

    def _on_view(self, _view: View) -> None:
        self._update_ring()

    def _notify(self) -> None:
        for cb in list(self._subscribers):
            try:
                cb()
            except Exception:
                self.log.exception("cluster subscriber failed")

