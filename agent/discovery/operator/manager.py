"""Running the scrape jobs of one kind of monitor, kept in step with the cluster.

A :class:`Manager` watches ServiceMonitors, PodMonitors or Probes through the shared
informers, translates each (agent/discovery/operator/monitors.py) into scrape jobs, and runs
one :class:`ScrapePool` per job fed by a :class:`Discoverer` over the same shared
informers. Secrets and ConfigMaps are watched only in the namespaces whose monitors
reference some (one watch per namespace, not per object: a watch per Secret exhausted the
client's connections at 100 monitors); a change to one re-translates the monitors that
read it, so a rotated token is used from the next
scrape. A monitor that cannot be translated is rejected with the reason and its jobs
stopped; the others are untouched. Imports nothing from the runtime.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from agent import labels as L
from agent.discovery.informer import Informer, InformerKey, object_key
from agent.discovery.informers import Informers
from agent.discovery.kubeclient import ClientSettings
from agent.discovery.kubernetes import Config, Discoverer
from agent.discovery.kubernetes import Metrics as DiscoveryMetrics
from agent.discovery.operator.monitors import (
    DEFAULTS,
    Defaults,
    Job,
    Ref,
    Rejected,
    references,
    translate,
)
from agent.relabel import Rule, process
from agent.scrape.ownership import Ownership
from agent.scrape.pool import ScrapePool
from agent.storage import Appendable

log = structlog.get_logger("operator")

PLURALS = {"ServiceMonitor": "servicemonitors", "PodMonitor": "podmonitors", "Probe": "probes"}
GROUP, VERSION = "monitoring.coreos.com", "v1"
MonKey = tuple[str, str]
Src = tuple[str, str]  # ("secrets" or "configmaps", namespace)


@dataclass
class MonitorState:
    """What the debug info and the API show of one monitor (never a credential)."""

    state: str = "pending"  # accepted | rejected | pending
    reason: str = ""
    jobs: list[str] = field(default_factory=list)


class _JobRunner:
    """One scrape job: its pool, and the discoverer (or static list) that feeds it."""

    def __init__(self, job: Job, pool: ScrapePool) -> None:
        self.job = job
        self.pool = pool
        self.discoverer: Discoverer | None = None
        self.task: asyncio.Task[None] | None = None
        self.discovered: list[L.Labels] = []
        self.listed = False

    def shape(self) -> tuple[Any, ...]:
        j = self.job
        return (j.role, j.namespaces, j.attach_node)

    def feed(self, targets: list[dict[str, str]]) -> None:
        self.discovered = [L.from_dict(t) for t in targets]
        self.listed = True
        self.pool.sync(self.discovered)

    def empty_reason(self) -> str:
        """Why this job has no targets, once discovery listed ("" when it has some)."""
        if not self.listed or self.pool.targets():
            return ""
        rules = self.job.config.relabel_rules
        if not self.discovered:
            return f"{self.job.name}: no {self.job.role or 'static'} targets in the watched namespaces"
        found = [L.from_dict({**dict(d), "job": self.job.name}) for d in self.discovered]
        if not _survivors(found, rules[: self.job.selector_end]):
            return f"{self.job.name}: the selector matches nothing"
        if not _survivors(found, rules[: self.job.port_end]):
            return f'{self.job.name}: port "{self.job.port}" matches no port of the selected objects'
        return f"{self.job.name}: every target was dropped by relabeling"


def _survivors(found: list[L.Labels], rules: list[Rule]) -> bool:
    return any(process(t, rules) is not None for t in found)


class _Sub:
    def __init__(self, fn: Callable[[dict[str, Any]], None]) -> None:
        self.fn = fn

    def on_add(self, obj: dict[str, Any]) -> None:
        self.fn(obj)

    def on_update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self.fn(new)

    def on_delete(self, obj: dict[str, Any]) -> None:
        self.fn(obj)


class Manager:
    """The monitors of one kind, each endpoint a running scrape job."""

    def __init__(
        self,
        informers: Informers,
        settings: ClientSettings,
        kind: str,
        appendable: Appendable,
        *,
        namespaces: tuple[str, ...] = (),
        label_selector: str = "",
        defaults: Defaults = DEFAULTS,
        extra_rules: list[Rule] | None = None,
        ownership: Ownership | None = None,
        seed: int | None = None,
        discovery_metrics: DiscoveryMetrics | None = None,
        sync_timeout: float = 60.0,
        on_wanted: Callable[[str, list[tuple[bytes, L.Labels]]], None] | None = None,
    ) -> None:
        self._informers = informers
        self._settings = settings
        self.kind = kind
        self._appendable = appendable
        self.key = InformerKey(GROUP, VERSION, PLURALS[kind], namespaces, label_selector)
        self.defaults = defaults
        self.extra_rules = list(extra_rules or [])
        self.ownership = ownership
        self._seed = seed
        # Told (job name, wanted targets) by every job's pool, and (name, []) when the job goes:
        # the component reports the union to the cluster and finds each target's node.
        self._on_wanted = on_wanted
        self._dmetrics = discovery_metrics or DiscoveryMetrics()
        # How long a Secret or ConfigMap informer may take to list before the monitor says why.
        self._sync_timeout = sync_timeout
        self._late: set[Src] = set()  # not listed within the sync timeout
        self._monitors: Informer | None = None
        self._sub = _Sub(self._monitor_changed)
        self._refs: dict[Src, tuple[Informer, _Sub]] = {}
        self._uses: dict[MonKey, set[Ref]] = {}
        self._runners: dict[MonKey, dict[str, _JobRunner]] = {}
        self.states: dict[MonKey, MonitorState] = {}
        self.rejections: dict[str, int] = {}
        self._dirty: set[MonKey] = set()
        self._wake = asyncio.Event()
        self._waiters: dict[Src, asyncio.Task[None]] = {}

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._monitors = await self._informers.acquire(self._settings, self.key)
        self._monitors.subscribe(self._sub)

    async def run(self) -> None:
        assert self._monitors is not None
        await self._monitors.synced.wait()
        while True:
            await self._reconcile()
            await self._wake.wait()
            await asyncio.sleep(0.05)  # a burst of changes at a time
            self._wake.clear()

    async def stop(self) -> None:
        for t in self._waiters.values():
            t.cancel()
        if self._monitors is not None:
            self._monitors.unsubscribe(self._sub)
            await self._informers.release(self._settings, self._monitors)
            self._monitors = None
        for key in list(self._runners):
            await self._set_jobs(key, [])
        for ref in list(self._refs):
            await self._release_ref(ref)

    def reconfigure(self, defaults: Defaults, extra_rules: list[Rule],
                    ownership: Ownership | None) -> None:
        """New component arguments that keep the same watch: every monitor re-translated."""
        self.defaults, self.extra_rules, self.ownership = defaults, list(extra_rules), ownership
        for runners in self._runners.values():
            for r in runners.values():
                if r.pool.ownership is not ownership:
                    r.pool.ownership = ownership
                    r.pool.rebalance()
        self._dirty |= set(self.states)
        self._wake.set()

    def rebalance(self) -> None:
        for runners in self._runners.values():
            for r in runners.values():
                r.pool.rebalance()

    # ------------------------------------------------------------ events

    def _monitor_changed(self, obj: dict[str, Any]) -> None:
        key = object_key(obj)
        if key is not None:
            self._dirty.add(key)
            self._wake.set()

    def _ref_changed(self, plural: str, obj: dict[str, Any]) -> None:
        key = object_key(obj)
        if key is not None:
            ref = (plural, key[0], key[1])
            self._dirty |= {k for k, refs in self._uses.items() if ref in refs}
            self._wake.set()

    def _src_changed(self, src: Src) -> None:
        self._dirty |= {k for k, refs in self._uses.items() if any(r[:2] == src for r in refs)}
        self._wake.set()

    # ------------------------------------------------------------ reconciling

    async def _reconcile(self) -> None:
        assert self._monitors is not None
        dirty, self._dirty = self._dirty, set()
        if not self.states and not self._runners:
            dirty |= set(self._monitors.objects)
        for key in sorted(dirty):
            obj = self._monitors.get(*key)
            if obj is None:
                self.states.pop(key, None)
                await self._set_jobs(key, [])
                await self._set_refs(key, set())
                continue
            obj = dict(obj, kind=self.kind)
            await self._set_refs(key, references(obj))
            state = self.states.setdefault(key, MonitorState())
            try:
                jobs = translate(obj, self._lookup, self.defaults, self.extra_rules)
            except Rejected as exc:
                if exc.reason == "pending":
                    state.state, state.reason = "pending", str(exc)
                    continue
                if state.state != "rejected" or state.reason != str(exc):
                    self.rejections[exc.reason] = self.rejections.get(exc.reason, 0) + 1
                    log.warning("monitor rejected", kind=self.kind, monitor=f"{key[0]}/{key[1]}",
                                reason=str(exc))
                state.state, state.reason, state.jobs = "rejected", str(exc), []
                await self._set_jobs(key, [])
                continue
            state.state, state.reason, state.jobs = "accepted", "", [j.name for j in jobs]
            await self._set_jobs(key, jobs)

    async def _set_jobs(self, key: MonKey, jobs: list[Job]) -> None:
        old = self._runners.pop(key, {})
        new: dict[str, _JobRunner] = {}
        for job in jobs:
            r = old.pop(job.name, None)
            if r is not None and (r.job.role, r.job.namespaces, r.job.attach_node) == (
                job.role, job.namespaces, job.attach_node
            ) and r.job.static == job.static:
                r.job = job
                r.pool.update_config(job.config)
            else:
                if r is not None:
                    await self._stop_runner(r)
                r = await self._start_runner(job)
            new[job.name] = r
        for r in old.values():
            await self._stop_runner(r)
        if new:
            self._runners[key] = new

    async def _start_runner(self, job: Job) -> _JobRunner:
        pool = ScrapePool(job.config, self._appendable, seed=self._seed, ownership=self.ownership)
        if self._on_wanted is not None:
            pool.on_wanted = functools.partial(self._on_wanted, job.name)
        r = _JobRunner(job, pool)
        if not job.role:
            r.feed(job.static)
            return r
        d = Discoverer(self._informers, self._settings,
                       Config(role=job.role, namespaces=job.namespaces, attach_node=job.attach_node),
                       r.feed, self._dmetrics)
        await d.start()
        r.discoverer = d
        r.task = asyncio.ensure_future(d.run())
        return r

    async def _stop_runner(self, r: _JobRunner) -> None:
        if r.task is not None:
            r.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await r.task
        if r.discoverer is not None:
            await r.discoverer.stop()
        await r.pool.stop()
        if self._on_wanted is not None:
            self._on_wanted(r.job.name, [])

    # ------------------------------------------------------------ secrets and configmaps

    async def _set_refs(self, key: MonKey, refs: set[Ref]) -> None:
        """One informer per (Secrets or ConfigMaps, namespace) that some monitor reads from:
        one watch per namespace, not one per object, however many monitors there are."""
        if refs:
            self._uses[key] = refs
        else:
            self._uses.pop(key, None)
        wanted = {(plural, ns) for refs_ in self._uses.values() for plural, ns, _ in refs_}
        for src in sorted(wanted - set(self._refs)):
            await self._acquire_ref(src)
        for src in set(self._refs) - wanted:
            await self._release_ref(src)

    async def _acquire_ref(self, src: Src) -> None:
        plural, ns = src
        inf = await self._informers.acquire(self._settings, InformerKey("", "v1", plural, (ns,)))
        sub = _Sub(lambda obj, p=plural: self._ref_changed(p, obj))
        self._refs[src] = (inf, sub)
        inf.subscribe(sub)
        self._waiters[src] = asyncio.ensure_future(self._await_sync(src, inf))

    async def _await_sync(self, src: Src, inf: Informer) -> None:
        """Re-translate the monitors reading from ``src`` when it is refused or the sync
        timeout passes (each says why), and again once it has listed."""
        deadline = asyncio.get_running_loop().time() + self._sync_timeout
        told = False
        while not await inf.wait_synced(0.2):
            late = asyncio.get_running_loop().time() > deadline
            if not told and (inf.health.healthy is False or late):
                if late:
                    self._late.add(src)
                told = True
                self._src_changed(src)
        self._late.discard(src)
        self._src_changed(src)

    async def _release_ref(self, src: Src) -> None:
        held = self._refs.pop(src, None)
        self._late.discard(src)
        waiter = self._waiters.pop(src, None)
        if waiter is not None:
            waiter.cancel()
        if held is not None:
            held[0].unsubscribe(held[1])
            await self._informers.release(self._settings, held[0])

    def _lookup(self, plural: str, ns: str, name: str, key: str) -> str:
        what = f"{'Secret' if plural == 'secrets' else 'ConfigMap'} {ns}/{name}"
        held = self._refs.get((plural, ns))
        if held is None:
            raise Rejected(f"waiting for {what}", "pending")
        inf = held[0]
        if not inf.synced.is_set():
            h = inf.health
            if h.healthy is False:
                raise Rejected(f"{what} cannot be read: {h.reason}: {h.message}", "forbidden")
            if (plural, ns) in self._late:
                raise Rejected(f"{what} not listed within {self._sync_timeout:g}s", "timeout")
            raise Rejected(f"waiting for {what}", "pending")
        obj = inf.get(ns, name)
        if obj is None:
            raise Rejected(f"{what} does not exist", "missing_secret")
        data = obj.get("data") or {}
        if plural == "configmaps":
            if key in data:
                return str(data[key])
            binary = obj.get("binaryData") or {}
            if key not in binary:
                raise Rejected(f'{what} has no key "{key}"', "missing_key")
            data = binary
        if key not in data:
            raise Rejected(f'{what} has no key "{key}"', "missing_key")
        try:
            return base64.b64decode(str(data[key]), validate=True).decode().strip()
        except (binascii.Error, UnicodeDecodeError):
            raise Rejected(f'{what} key "{key}" is not base64 of UTF-8 text', "invalid") from None

    # ------------------------------------------------------------ status

    def runners(self) -> Iterator[tuple[MonKey, _JobRunner]]:
        for key, runners in sorted(self._runners.items()):
            for r in runners.values():
                yield key, r

    def monitor_states(self) -> dict[MonKey, MonitorState]:
        """Each monitor's state, with the no-target and unreadable-namespace reasons added."""
        out = {}
        for key, st in sorted(self.states.items()):
            st = MonitorState(st.state, st.reason, list(st.jobs))
            if st.state == "accepted":
                for r in self._runners.get(key, {}).values():
                    why = _unreadable(r) or r.empty_reason()
                    if why:
                        st.state, st.reason = "rejected", why
                        break
            out[key] = st
        return out

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        counts: dict[str, int] = {"accepted": 0, "rejected": 0, "pending": 0}
        for st in self.monitor_states().values():
            counts[st.state] = counts.get(st.state, 0) + 1
        g = GaugeMetricFamily("shoal_operator_monitors", "Monitors by state.", labels=["kind", "state"])
        for state, n in sorted(counts.items()):
            g.add_metric([self.kind, state], n)
        yield g
        c = CounterMetricFamily("shoal_operator_monitor_rejections",
                                "Times a monitor was rejected, by reason.", labels=["kind", "reason"])
        for reason, n in sorted(self.rejections.items()):
            c.add_metric([self.kind, reason], n)
        yield c

    def health(self) -> list[tuple[InformerKey, Any]]:
        out = []
        if self._monitors is not None:
            out.append((self._monitors.key, self._monitors.health))
        return out


def _unreadable(r: _JobRunner) -> str:
    if r.discoverer is None:
        return ""
    for key, h in r.discoverer.health():
        if h.healthy is False:
            return f"{r.job.name}: {key} cannot be read: {h.reason}: {h.message}"
    return ""
