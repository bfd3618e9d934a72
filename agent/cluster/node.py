"""The front door of the cluster engine: a Node runs the protocol in a thread of its own.

The protocol gets its own thread, event loop and sockets so that a busy scrape
loop in the agent's main event loop cannot delay an ack (the agent's loop lags
about 200 ms at p99 under full load, issue 6). Everything the rest of the agent
needs is safe to call from any thread: ``members()`` and ``owner()`` read an
immutable ``View`` that the protocol thread replaces on every change; setters
post to the protocol thread; observers are called on the protocol thread, so an
asyncio consumer wraps its callback with ``asyncio_observer``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from agent.cluster.keyring import Keyring
from agent.cluster.member import Liveness, Member, Progress, Role, TargetDigest, join_addr
from agent.cluster.metrics import ClusterMetrics
from agent.cluster.ring import Ring
from agent.cluster.settings import Settings
from agent.cluster.swim import Membership
from agent.cluster.transport import Dialer, Transport, bind_pair


@dataclass(frozen=True)
class View:
    """One node's view of the cluster at one moment, with the ownership it implies."""

    members: tuple[Member, ...]
    ring: Ring

    def owner(self, key: str | bytes) -> Member | None:
        name = self.ring.owner(key)
        return next((m for m in self.members if m.name == name), None)

    def get(self, name: str) -> Member | None:
        return next((m for m in self.members if m.name == name), None)


Observer = Callable[[View], None]


def asyncio_observer(loop: asyncio.AbstractEventLoop, callback: Observer) -> Observer:
    """Wrap an observer so that it runs on ``loop`` (the agent's), not on the protocol thread."""
    return lambda view: loop.call_soon_threadsafe(callback, view)


class Node:
    """One member of a cluster: start(), join(), read the view, set the local state, stop()."""

    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry | None = None,
        logger: Any = None,
        dialer: Dialer | None = None,
        resolve_seeds: Callable[[], list[str]] | None = None,
    ) -> None:
        """``dialer``: carry push-pull through another server instead of our TCP listener
        (no TCP socket is bound then); the receiving side calls ``serve_push_pull``.
        ``resolve_seeds``: look the join addresses up again before each rejoin (blocking;
        run in a worker thread), so peers behind a DNS name that changed are followed."""
        self.settings = settings
        self._dialer = dialer
        self._resolve_seeds = resolve_seeds
        self.metrics = ClusterMetrics(registry)
        self.log = logger or structlog.get_logger("cluster").bind(node=settings.name)
        self._keyring = Keyring(settings.keys, settings.cluster_name)
        self._observers: list[Observer] = []
        self._observers_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._membership: Membership | None = None
        self._notify_scheduled = False
        self._view = View((), Ring((), settings.seed))
        self.address = ""

    # -- lifecycle --

    def start(self) -> None:
        """Bind the sockets (errors raise here) and start the protocol thread."""
        udp, tcp = bind_pair(
            self.settings.bind_host, self.settings.bind_port, with_tcp=self._dialer is None
        )
        host = self.settings.advertise_host or self.settings.bind_host
        self.address = join_addr(host, udp.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        async def boot() -> None:
            def transport(m: Membership) -> Transport:
                return Transport(
                    self.settings.cluster_name,
                    self.settings.bind_host,
                    self._keyring,
                    self.metrics,
                    self.log,
                    m.on_packet,
                    m.on_push_pull,
                    self._dialer,
                )

            self._membership = Membership(
                self.settings,
                self.address,
                transport,
                self.metrics,
                self.log,
                self._schedule_notify,
                self._resolve_seeds,
            )
            await self._membership.transport.start(udp, tcp)
            self._membership.start()
            self._publish()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(boot())
            except BaseException as e:  # reported to start()'s caller
                failure.append(e)
                started.set()
                return
            started.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(
            target=run, name=f"cluster-{self.settings.name}", daemon=True
        )
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        self.log.info("cluster node started", address=self.address)

    def stop(self, leave: bool = True) -> None:
        """Leave gracefully (tell the others) unless ``leave`` is False, then close the sockets.

        Blocks until the protocol thread has ended; never call it from an observer.
        """
        if self._loop is None or self._membership is None or not self._loop.is_running():
            return
        membership = self._membership

        async def shutdown() -> None:
            if leave:
                await membership.leave()
            await membership.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join()

    def join(self, addresses: Iterable[str], timeout: float | None = None) -> int:
        """Join through these host:port addresses; how many answered (0: we are alone).

        Blocks for up to ``tcp_timeout``: from an event loop, call it with
        ``asyncio.to_thread``. Addresses that did not answer are retried every
        ``rejoin_interval``, so a node started before its peers finds them later.
        """
        coro = self._call(lambda m: m.join(list(addresses)))
        return asyncio.run_coroutine_threadsafe(coro, self._running_loop()).result(timeout)

    async def serve_push_pull(self, frame: bytes, peer: str = "") -> bytes:
        """Answer a push-pull frame that another server received (the ``dialer`` seam's far end).

        Awaitable from any event loop; the work runs on the protocol thread. Raises
        ``BadMessage`` (already counted and logged) for a frame to refuse.
        """
        loop = self._running_loop()  # raises if the node is not running
        assert self._membership is not None
        future = asyncio.run_coroutine_threadsafe(
            self._membership.transport.serve_frame(frame, peer), loop
        )
        return await asyncio.wrap_future(future)

    # -- reading --

    @property
    def view(self) -> View:
        return self._view

    def members(self) -> tuple[Member, ...]:
        return self._view.members

    def local(self) -> Member | None:
        return next((m for m in self._view.members if m.is_self), None)

    def owner(self, key: str | bytes) -> Member | None:
        """The member that owns ``key`` among participating, live members, in this node's view."""
        return self._view.owner(key)

    def add_observer(self, callback: Observer) -> Callable[[], None]:
        """Call ``callback(view)`` on the protocol thread after changes; returns the remover."""
        with self._observers_lock:
            self._observers.append(callback)
            self.metrics.observers.set(len(self._observers))

        def remove() -> None:
            with self._observers_lock:
                if callback in self._observers:
                    self._observers.remove(callback)
                self.metrics.observers.set(len(self._observers))

        return remove

    # -- the local member's announced state --

    def set_role(self, role: Role) -> None:
        self._post(lambda m: m.set_role(role))

    def set_progress(self, progress: Progress) -> None:
        """Publishes at most once per ``metadata_min_interval``; the latest value wins."""
        self._post(lambda m: m.set_progress(progress))

    def set_digests(self, digests: tuple[TargetDigest, ...]) -> None:
        """Announce what our clustered components see (at most ``MAX_DIGESTS`` entries)."""
        self._post(lambda m: m.set_digests(digests))

    def set_keys(self, keys: tuple[bytes, ...]) -> None:
        """Rotate the gossip keys (the first seals, all open); takes effect on the next packet."""
        for k in keys:
            if len(k) not in (16, 24, 32):
                raise ValueError("every key must be 16, 24 or 32 bytes (AES-128/192/256)")
        self._running_loop().call_soon_threadsafe(self._keyring.replace, keys)

    def set_transport_filter(self, allow: Callable[[str], bool] | None) -> None:
        """Fault injection: drop all traffic with peers (host:port) for which ``allow`` is False.

        For tests and drills that make a partition; None lets everything through.
        """
        self._post(lambda m: setattr(m.transport, "allow", allow))

    # -- internals --

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or not self._loop.is_running():
            raise RuntimeError("cluster node is not running")
        return self._loop

    async def _call(self, fn: Callable[[Membership], Any]) -> Any:
        assert self._membership is not None
        return await fn(self._membership)

    def _post(self, fn: Callable[[Membership], None]) -> None:
        membership = self._membership
        if membership is not None:
            self._running_loop().call_soon_threadsafe(fn, membership)

    def _schedule_notify(self) -> None:
        """Coalesce the changes of one loop turn into one new view and one notification."""
        if not self._notify_scheduled and self._loop is not None:
            self._notify_scheduled = True
            self._loop.call_soon(self._publish)

    def _publish(self) -> None:
        self._notify_scheduled = False
        assert self._membership is not None
        members = self._membership.snapshot()
        self._update_gauges(members)  # first, so whoever sees the new view sees its gauges
        self._view = View(
            members, Ring((m.name for m in members if m.owns_targets), self.settings.seed)
        )
        with self._observers_lock:
            observers = list(self._observers)
        for cb in observers:
            try:
                cb(self._view)
            except Exception:  # an observer's bug must not stop the protocol
                self.log.exception("cluster observer failed")

    def _update_gauges(self, members: tuple[Member, ...]) -> None:
        m = self.metrics
        for role in Role:
            m.peers.labels(role.name.lower()).set(
                sum(
                    1
                    for x in members
                    if x.role is role and x.liveness in (Liveness.ALIVE, Liveness.SUSPECT)
                )
            )
        for liveness in Liveness:
            m.members.labels(liveness.name.lower()).set(
                sum(1 for x in members if x.liveness is liveness)
            )
        me = next((x for x in members if x.is_self), None)
        if me is not None:
            for role in Role:
                m.node_info.labels(role.name.lower()).set(1 if me.role is role else 0)
