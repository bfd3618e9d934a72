"""SWIM membership with Lifeguard, run as tasks on the protocol thread's own event loop.

Each probe interval the node pings one member (round robin over a shuffled list);
without an ack in time it asks ``indirect_checks`` others to ping it and waits
for an ack or their nacks until the interval ends; still nothing, and the member
is suspected. A suspicion becomes a death when its timer (see suspicion.py) runs
out, unless the member refutes it by gossiping a higher incarnation. Gossip is
piggybacked on every probe and ack, and sent to a few members every gossip
interval; a TCP push-pull of the whole table with a random member (and, every
rejoin interval, with the join addresses) makes the views converge after a
partition. Behaviour follows hashicorp/memberlist and the Lifeguard paper;
everything here runs on one thread, so no locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from agent.cluster.awareness import Awareness
from agent.cluster.broadcast import BroadcastQueue
from agent.cluster.member import Liveness, Member, Progress, Role, TargetDigest
from agent.cluster.messages import (
    Ack,
    Dead,
    IndirectPing,
    Message,
    Nack,
    Ping,
    PushPull,
    State,
    Suspect,
    encode_message,
    encode_packet,
    encode_push_pull,
    framed_size,
    packet_header,
)
from agent.cluster.metrics import ClusterMetrics
from agent.cluster.settings import Settings
from agent.cluster.suspicion import Suspicion
from agent.cluster.transport import MAX_PACKET, Transport

_LIVE = (Liveness.ALIVE, Liveness.SUSPECT)
_GONE = (Liveness.DEAD, Liveness.LEFT)


@dataclass
class _Record:
    name: str
    addr: str
    incarnation: int
    liveness: Liveness
    role: Role
    progress: Progress
    changed: float = field(default_factory=time.monotonic)
    digests: tuple[TargetDigest, ...] = ()

    def state(self) -> State:
        return State(
            self.name, self.addr, self.incarnation, self.role, self.progress, self.liveness,
            self.digests,
        )


@dataclass
class _AckWait:
    future: asyncio.Future[None]
    sent: float
    nacks: int = 0


class Membership:
    """The protocol state of one node. Call only from the loop it was created on."""

    def __init__(
        self,
        settings: Settings,
        addr: str,
        transport_factory: Callable[[Membership], Transport],
        metrics: ClusterMetrics,
        log: Any,
        on_change: Callable[[], None],
        resolve_seeds: Callable[[], list[str]] | None = None,
    ) -> None:
        self.settings = settings
        # Looks the join addresses up again (DNS) before each rejoin; blocking, so run in a thread.
        self._resolve_seeds = resolve_seeds
        self.name = settings.name
        self.addr = addr
        self.metrics = metrics
        self.log = log
        self._on_change = on_change
        self.awareness = Awareness(settings.awareness_max_multiplier)
        self.members: dict[str, _Record] = {
            self.name: _Record(self.name, addr, 0, Liveness.ALIVE, Role.PARTICIPANT, Progress())
        }
        self._header = packet_header(settings.cluster_name)
        self._budget = MAX_PACKET - len(self._header) - 32  # room for the frame and AEAD overhead
        self.broadcasts = BroadcastQueue(
            lambda: settings.retransmit_limit(len(self.members)), framed_size
        )
        self._seq = itertools.count(random.randrange(1 << 16))
        self._acks: dict[int, _AckWait] = {}
        self._suspicions: dict[str, Suspicion] = {}
        self._probe_list: list[str] = []
        self._probe_index = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._seeds: list[str] = []
        # Addresses of members forgotten while dead (a partition outlasting dead_reap), with
        # when: still tried by the reconnect rule for reconnect_timeout.
        self._lost: dict[str, float] = {}
        self._pending_progress: Progress | None = None
        self._last_publish = 0.0
        self._join_warned = -1e9
        self.leaving = False
        self.transport = transport_factory(self)

    # -- lifecycle --------------------------------------------------------

    def start(self) -> None:
        for run in (
            self._probe_loop,
            self._gossip_loop,
            self._push_pull_loop,
            self._rejoin_loop,
            self._reap_loop,
        ):
            self._tasks.append(asyncio.get_running_loop().create_task(run()))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        for s in self._suspicions.values():
            s.cancel()
        await self.transport.close()

    async def join(self, addresses: list[str]) -> int:
        """Push-pull with each address; the ones that answered. They are kept for rejoining."""
        self._seeds = [a for a in addresses if a != self.addr]
        results = await asyncio.gather(*(self._push_pull(a, join=True) for a in self._seeds))
        return sum(results)

    async def leave(self) -> None:
        """Tell every live member we leave, and give the message a moment to spread."""
        me = self.members[self.name]
        self.leaving = True
        me.liveness, me.changed = Liveness.LEFT, time.monotonic()
        notice = encode_message(Dead(self.name, me.incarnation, self.name))
        self.broadcasts.queue(self.name, notice)
        for r in list(self.members.values()):
            if r.name != self.name and r.liveness in _LIVE:
                self.transport.send(r.addr, encode_packet(self._header, [notice]))
        deadline = time.monotonic() + self.settings.leave_timeout
        while self.broadcasts.pending(self.name) and time.monotonic() < deadline:
            await asyncio.sleep(self.settings.gossip_interval)
        self._changed()

    # -- the local member -------------------------------------------------

    def set_role(self, role: Role) -> None:
        me = self.members[self.name]
        if me.role is not role:
            me.role = role
            self._publish_self()

    def set_digests(self, digests: tuple[TargetDigest, ...]) -> None:
        """What our clustered components see; gossiped with our state when it changes."""
        me = self.members[self.name]
        if me.digests != digests:
            me.digests = digests
            self._publish_self()

    def set_progress(self, progress: Progress) -> None:
        """Published now if the last publication is old enough, else at the next gossip tick."""
        self._pending_progress = progress
        if time.monotonic() - self._last_publish >= self.settings.metadata_min_interval:
            self._flush_progress()

    def _flush_progress(self) -> None:
        if self._pending_progress is not None:
            self.members[self.name].progress = self._pending_progress
            self._pending_progress = None
            self._publish_self()

    def _publish_self(self) -> None:
        me = self.members[self.name]
        me.incarnation += 1
        self._last_publish = time.monotonic()
        self.broadcasts.queue(self.name, encode_message(me.state()))
        self._changed()

    def _refute(self, accused_incarnation: int) -> None:
        me = self.members[self.name]
        me.incarnation = max(me.incarnation, accused_incarnation)
        self._aware(1)
        self.metrics.events.labels("refute").inc()
        self._publish_self()

    # -- state changes (memberlist's aliveNode, suspectNode, deadNode) -----

    def _aware(self, delta: int) -> None:
        self.metrics.health_score.set(self.awareness.apply(delta))

    def _changed(self) -> None:
        self.metrics.incarnation.set(self.members[self.name].incarnation)
        self._on_change()

    def on_alive(self, s: State) -> None:
        if self.leaving:
            return
        if s.name == self.name:
            me = self.members[self.name]
            if s.incarnation >= me.incarnation and s != replace(me.state(), liveness=s.liveness):
                self._refute(s.incarnation)  # an old instance of us, or a rumour about us
            return
        r = self.members.get(s.name)
        if r is None:
            self.members[s.name] = _Record(
                s.name, s.addr, s.incarnation, Liveness.ALIVE, s.role, s.progress,
                digests=s.digests,
            )
            self._probe_list.insert(random.randint(0, len(self._probe_list)), s.name)
            self.metrics.events.labels("node_join").inc()
        else:
            if r.addr != s.addr and r.liveness in _LIVE:
                self.metrics.events.labels("node_conflict").inc()
                self.transport.drop(
                    "name_conflict", f"{s.name} claimed from {s.addr}, known at {r.addr}", s.addr
                )
                return
            if s.incarnation <= r.incarnation:
                return
            was = r.liveness
            r.addr, r.incarnation, r.role, r.progress = s.addr, s.incarnation, s.role, s.progress
            r.digests = s.digests
            r.liveness = Liveness.ALIVE
            if was is not Liveness.ALIVE:
                r.changed = time.monotonic()
            sus = self._suspicions.pop(s.name, None)
            if sus is not None:
                sus.cancel()
            self.metrics.events.labels("node_join" if was in _GONE else "node_update").inc()
        self.broadcasts.queue(s.name, encode_message(replace(s, liveness=Liveness.ALIVE)))
        self._changed()

    def on_suspect(self, m: Suspect) -> None:
        r = self.members.get(m.name)
        if r is None or m.incarnation < r.incarnation or self.leaving:
            return
        sus = self._suspicions.get(m.name)
        if sus is not None:
            if sus.confirm(m.accuser):
                self.broadcasts.queue(m.name, encode_message(m))
            return
        if r.liveness is not Liveness.ALIVE:
            return
        if m.name == self.name:
            self._refute(m.incarnation)
            return
        r.incarnation, r.liveness, r.changed = m.incarnation, Liveness.SUSPECT, time.monotonic()
        live = sum(1 for x in self.members.values() if x.liveness in _LIVE)
        expected = int(self.settings.suspicion_mult) - 2
        if live - 2 < expected:
            expected = 0
        lo, hi = self.settings.suspicion_bounds(live)
        name, inc = m.name, m.incarnation
        self._suspicions[m.name] = Suspicion(
            asyncio.get_running_loop(),
            m.accuser,
            expected,
            lo,
            hi,
            lambda: self.on_dead(Dead(name, inc, self.name)),
        )
        self.metrics.events.labels("node_suspect").inc()
        self.broadcasts.queue(m.name, encode_message(m))
        self._changed()

    def on_dead(self, m: Dead) -> None:
        r = self.members.get(m.name)
        if r is None or m.incarnation < r.incarnation or r.liveness in _GONE:
            return
        if m.name == self.name:
            if not self.leaving:
                self._refute(m.incarnation)
            return
        sus = self._suspicions.pop(m.name, None)
        if sus is not None:
            sus.cancel()
        r.incarnation, r.changed = m.incarnation, time.monotonic()
        r.liveness = Liveness.LEFT if m.accuser == m.name else Liveness.DEAD
        self.metrics.events.labels("node_leave").inc()
        self.broadcasts.queue(m.name, encode_message(m))
        self._changed()

    def merge(self, states: list[State]) -> None:
        """Apply a push-pull: a remote 'dead' is only a suspicion here (memberlist's rule)."""
        for s in states:
            if s.liveness in _LIVE:
                self.on_alive(replace(s, liveness=Liveness.ALIVE))
                if s.liveness is Liveness.SUSPECT:
                    self.on_suspect(Suspect(s.name, s.incarnation, self.name))
            elif s.liveness is Liveness.LEFT:
                self.on_dead(Dead(s.name, s.incarnation, s.name))
            else:
                self.on_suspect(Suspect(s.name, s.incarnation, self.name))

    # -- packets ------------------------------------------------------------

    def _send(self, addr: str, first: list[bytes]) -> None:
        room = self._budget - sum(framed_size(b) for b in first)
        self.transport.send(addr, encode_packet(self._header, first + self.broadcasts.take(room)))

    def on_packet(self, messages: list[Message], peer: str) -> None:
        for m in messages:
            if isinstance(m, Ping):
                self._on_ping(m, peer)
            elif isinstance(m, IndirectPing):
                self._on_indirect(m)
            elif isinstance(m, Ack):
                w = self._acks.get(m.seq)
                if w is not None and not w.future.done():
                    w.future.set_result(None)
            elif isinstance(m, Nack):
                w = self._acks.get(m.seq)
                if w is not None:
                    w.nacks += 1
            elif isinstance(m, State):
                self.on_alive(m)
            elif isinstance(m, Suspect):
                self.on_suspect(m)
            else:
                self.on_dead(m)

    def _on_ping(self, m: Ping, peer: str) -> None:
        if m.target != self.name:
            return  # meant for an earlier node at this address
        first = [encode_message(Ack(m.seq))]
        r = self.members.get(m.source)
        if r is not None and r.liveness is not Liveness.ALIVE:
            # tell a member we think suspect or dead at once, so it can refute
            accusation = Suspect if r.liveness is Liveness.SUSPECT else Dead
            first.append(encode_message(accusation(r.name, r.incarnation, self.name)))
        self._send(peer, first)

    def _on_indirect(self, m: IndirectPing) -> None:
        known = self.members.get(m.target)
        if known is None or known.addr != m.target_addr:
            return  # only ping members we know where they are: no reflection to arbitrary addresses
        seq = next(self._seq) & 0xFFFFFFFF
        loop = asyncio.get_running_loop()
        w = _AckWait(loop.create_future(), loop.time())
        self._acks[seq] = w
        self._send(m.target_addr, [encode_message(Ping(seq, m.target, self.name, self.addr))])

        async def wait() -> None:
            try:
                async with asyncio.timeout(self.settings.probe_timeout):
                    await w.future
                self._send(m.source_addr, [encode_message(Ack(m.seq))])
            except TimeoutError:
                self._send(m.source_addr, [encode_message(Nack(m.seq))])
            finally:
                self._acks.pop(seq, None)

        self._tasks.append(loop.create_task(wait()))
        self._tasks = [t for t in self._tasks if not t.done()]

    # -- probing --------------------------------------------------------------

    def _next_target(self) -> _Record | None:
        for _ in range(len(self._probe_list) + 1):
            if self._probe_index >= len(self._probe_list):
                self._probe_list = [n for n in self.members if n != self.name]
                random.shuffle(self._probe_list)
                self._probe_index = 0
                if not self._probe_list:
                    return None
            r = self.members.get(self._probe_list[self._probe_index])
            self._probe_index += 1
            if r is not None and r.liveness in _LIVE:
                return r
        return None

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(self.awareness.scale(self.settings.probe_interval))
            target = self._next_target()
            if target is not None and not self.leaving:
                await self._probe(target)

    async def _probe(self, target: _Record) -> None:
        loop = asyncio.get_running_loop()
        seq = next(self._seq) & 0xFFFFFFFF
        w = _AckWait(loop.create_future(), loop.time())
        self._acks[seq] = w
        started = loop.time()
        interval = self.awareness.scale(self.settings.probe_interval)
        try:
            self._send(target.addr, [encode_message(Ping(seq, target.name, self.name, self.addr))])
            try:
                async with asyncio.timeout(self.awareness.scale(self.settings.probe_timeout)):
                    await asyncio.shield(w.future)
                self.metrics.ack_latency.observe(loop.time() - w.sent)
                self._aware(-1)
                return
            except TimeoutError:
                pass
            helpers = [
                r
                for r in self.members.values()
                if r.liveness is Liveness.ALIVE and r.name not in (self.name, target.name)
            ]
            helpers = random.sample(helpers, min(self.settings.indirect_checks, len(helpers)))
            ask = encode_message(IndirectPing(seq, target.name, target.addr, self.name, self.addr))
            for h in helpers:
                self._send(h.addr, [ask])
            try:
                async with asyncio.timeout(max(started + interval - loop.time(), 0.0)):
                    await asyncio.shield(w.future)
                self._aware(-1)
                return
            except TimeoutError:
                pass
            missed = len(helpers) - w.nacks if helpers else 1
            self._aware(max(missed, 0))
            if target.liveness in _LIVE and not self.leaving:
                self.on_suspect(Suspect(target.name, target.incarnation, self.name))
        finally:
            self._acks.pop(seq, None)

    # -- gossip, push-pull, rejoin, reaping -------------------------------------

    async def _gossip_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.gossip_interval)
            if time.monotonic() - self._last_publish >= self.settings.metadata_min_interval:
                self._flush_progress()
            if not len(self.broadcasts):
                continue
            now = time.monotonic()
            peers = [
                r
                for r in self.members.values()
                if r.name != self.name
                and (r.liveness in _LIVE or now - r.changed < self.settings.gossip_to_the_dead)
            ]
            for r in random.sample(peers, min(self.settings.gossip_nodes, len(peers))):
                msgs = self.broadcasts.take(self._budget)
                if msgs:
                    self.transport.send(r.addr, encode_packet(self._header, msgs))

    def _states(self) -> list[State]:
        return [r.state() for r in self.members.values()]

    async def on_push_pull(self, request: PushPull, peer: str) -> bytes:
        answer = encode_push_pull(self.settings.cluster_name, False, self._states())
        self.merge(request.states)
        return answer

    async def _push_pull(self, addr: str, join: bool = False) -> bool:
        body = encode_push_pull(self.settings.cluster_name, join, self._states())
        try:
            answer = await self.transport.exchange(addr, body, self.settings.tcp_timeout)
        except Exception as e:
            error = str(e) or type(e).__name__
            now = time.monotonic()
            if join and now - self._join_warned >= 30.0:  # a TLS or key mismatch says so here
                self._join_warned = now
                self.log.warning("join through a peer failed; retrying", peer=addr, error=error)
            else:
                self.log.debug("push-pull failed", peer=addr, error=error)
            return False
        self.merge(answer.states)
        return True

    async def _push_pull_loop(self) -> None:
        while True:
            interval = self.settings.push_pull_interval
            await asyncio.sleep(interval * random.uniform(0.75, 1.25))
            live = [r for r in self.members.values() if r.name != self.name and r.liveness in _LIVE]
            if live and not self.leaving:
                await self._push_pull(random.choice(live).addr)
            if not self.leaving:
                await self._reconnect(len(live))

    async def _reconnect(self, live: int) -> None:
        """Serf's reconnect: try one member held dead, or forgotten while dead less than
        ``reconnect_timeout`` ago (or, seeing fewer members than join addresses, one of those)
        every push-pull interval, so a healed partition is found in seconds rather than at the
        next rejoin, however long it lasted. The first exchange makes each side refute the
        death it reads about itself; a second one carries those refutations across."""
        candidates = [r.addr for r in self.members.values() if r.liveness is Liveness.DEAD]
        known = {r.addr for r in self.members.values()}
        candidates += [a for a in self._lost if a not in known]
        if live + 1 < len(self._seeds):
            candidates += self._seeds
        if candidates:
            addr = random.choice(candidates)
            if await self._push_pull(addr):
                await self._push_pull(addr)

    async def _rejoin_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.rejoin_interval)
            if self.leaving:
                continue
            if self._resolve_seeds is not None:
                await self._reresolve()
            if self._seeds:
                await asyncio.gather(*(self._push_pull(a) for a in self._seeds))

    async def _reresolve(self) -> None:
        """Follow a headless Service whose pods changed: the names are looked up at each rejoin.

        A lookup that fails or finds nobody keeps the previous addresses (a DNS outage
        must not cut the node off from peers it could still reach).
        """
        assert self._resolve_seeds is not None
        try:
            found = await asyncio.to_thread(self._resolve_seeds)
        except Exception as e:
            self.log.warning("join addresses did not resolve; keeping the last ones",
                             error=str(e) or type(e).__name__)
            return
        seeds = [a for a in found if a != self.addr]
        if seeds and seeds != self._seeds:
            self.log.info("join addresses changed", before=len(self._seeds), now=len(seeds),
                          added=sorted(set(seeds) - set(self._seeds)))
            self._seeds = seeds

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            gone = [
                n
                for n, r in self.members.items()
                if n != self.name
                and r.liveness in _GONE
                and now - r.changed > self.settings.dead_reap
            ]
            for n in gone:
                if self.members[n].liveness is Liveness.DEAD:
                    self._lost[self.members[n].addr] = now
                del self.members[n]
            timeout = self.settings.reconnect_timeout
            self._lost = {a: t for a, t in self._lost.items() if now - t <= timeout}
            if gone:
                self._changed()

    def snapshot(self) -> tuple[Member, ...]:
        return tuple(
            Member(
                r.name, r.addr, r.incarnation, r.liveness, r.role, r.progress, r.name == self.name,
                r.digests,
            )
            for r in sorted(self.members.values(), key=lambda r: r.name)
        )
