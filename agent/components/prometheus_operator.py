"""``prometheus.operator.servicemonitors``, ``.podmonitors`` and ``.probes``: scrape what
prometheus-operator's custom resources ask for, with Alloy's arguments.

Thin: the arguments become client settings, a label selector for the monitors and the
scrape defaults, and a :class:`Manager` (agent/discovery/operator) over the process' shared
informers does the rest: one scrape job per monitor endpoint, forwarded to ``forward_to``.
Each monitor's state (accepted, or rejected with the reason) shows in the health, the
debug info and ``shoal_operator_monitors``; credentials read from Secrets never do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.registry import Collector

from agent import labels as L
from agent.components._common import (
    AuthorizationBlock,
    BasicAuthBlock,
    RuleBlock,
    TLSBlock,
    check_auth,
    check_proxy,
    check_url,
    http_client,
    rules,
)
from agent.components._restartable import run_restartable
from agent.components._targetinfo import pool_targets
from agent.components.prometheus_scrape import ClusteringBlock, ClusterService, NodeAffine
from agent.discovery.kubeclient import ClientSettings, InCluster
from agent.discovery.kubernetes import Metrics as DiscoveryMetrics
from agent.discovery.operator import Defaults, Manager
from agent.discovery.operator.monitors import ScrapeClass
from agent.discovery.selectors import SelectorSyntaxError, check_label_selector
from agent.runtime import services
from agent.runtime.component import Component, Options
from agent.runtime.health import Health
from agent.runtime.registry import register
from agent.scrape.ownership import Ownership, target_node
from agent.storage import Appendable, Fanout
from agent.syntax.decode import attr, block
from agent.syntax.value import Duration, Secret

_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "", "DoesNotExist": "!"}


@dataclass
class ClientBlock:
    api_server: str = attr(default="")
    kubeconfig_file: str = attr(default="")
    bearer_token: Secret | None = attr(default=None)
    bearer_token_file: str = attr(default="")
    proxy_url: str = attr(default="")
    no_proxy: str = attr(default="")
    proxy_from_environment: bool = attr(default=False)
    proxy_connect_header: dict[str, list[Secret]] = attr(default={})
    follow_redirects: bool = attr(default=True)
    enable_http2: bool = attr(default=True)
    basic_auth: BasicAuthBlock | None = block()
    authorization: AuthorizationBlock | None = block()
    tls_config: TLSBlock | None = block()

    def validate(self) -> None:
        check_auth(self.bearer_token, self.bearer_token_file, self.basic_auth, self.authorization)
        check_proxy(self.proxy_url, self.no_proxy, self.proxy_from_environment,
                    self.proxy_connect_header)
        if self.api_server:
            check_url(self.api_server, "api_server")
        if self.api_server and self.kubeconfig_file:
            raise ValueError("cannot use 'kubeconfig_file' and 'api_server' simultaneously")

    def settings(self, in_cluster: InCluster) -> ClientSettings:
        return ClientSettings(
            api_server=self.api_server,
            kubeconfig_file=self.kubeconfig_file,
            http=http_client(
                bearer_token=self.bearer_token, bearer_token_file=self.bearer_token_file,
                basic_auth=self.basic_auth, authorization=self.authorization,
                tls_config=self.tls_config, proxy_url=self.proxy_url, no_proxy=self.no_proxy,
                proxy_from_environment=self.proxy_from_environment,
                proxy_connect_header=self.proxy_connect_header,
                follow_redirects=self.follow_redirects, enable_http2=self.enable_http2,
            ),
            in_cluster=in_cluster,
        )


@dataclass
class MatchExpressionBlock:
    key: str = attr(required=True)
    operator: str = attr(required=True)
    values: list[str] = attr(default=[])

    def validate(self) -> None:
        if self.operator not in _OPERATORS:
            raise ValueError(
                f'match_expression operator "{self.operator}" is not one of In, NotIn, Exists, DoesNotExist'
            )
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"match_expression {self.operator} on {self.key!r} needs values")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"match_expression {self.operator} on {self.key!r} takes no values")

    def term(self) -> str:
        op = _OPERATORS[self.operator]
        if self.operator in ("In", "NotIn"):
            return f"{self.key} {op} ({','.join(self.values)})"
        return f"{op}{self.key}"


@dataclass
class SelectorBlock:
    match_labels: dict[str, str] = attr(default={})
    match_expression: list[MatchExpressionBlock] = block(default_factory=list)

    def label_selector(self) -> str:
        terms = [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        return ",".join(terms + [e.term() for e in self.match_expression])


@dataclass
class ScrapeBlock:
    default_scrape_interval: Duration = attr(default=Duration("1m"))
    default_scrape_timeout: Duration = attr(default=Duration("10s"))
    default_sample_limit: int = attr(default=0)
    scrape_native_histograms: bool = attr(default=False)
    honor_metadata: bool = attr(default=False)
    enable_type_and_unit_labels: bool = attr(default=False)

    def validate(self) -> None:
        if float(self.default_scrape_interval) <= 0 or float(self.default_scrape_timeout) <= 0:
            raise ValueError("default_scrape_interval and default_scrape_timeout must be positive")
        if self.default_sample_limit < 0:
            raise ValueError("default_sample_limit cannot be negative")


@dataclass
class AttachMetadataBlock:
    node: bool = attr(default=False)


@dataclass
class ScrapeClassBlock:
    name: str = attr(required=True)
    default: bool = attr(default=False)
    tls_config: TLSBlock | None = block()
    authorization: AuthorizationBlock | None = block()
    relabel_rule: list[RuleBlock] = block(default_factory=list)
    metric_relabel_rule: list[RuleBlock] = block(default_factory=list)
    attach_metadata: AttachMetadataBlock | None = block()

    def to_class(self) -> ScrapeClass:
        http = http_client(tls_config=self.tls_config, authorization=self.authorization)
        return ScrapeClass(
            name=self.name,
            default=self.default,
            tls_config=http.tls_config,
            authorization=http.authorization,
            relabel_rules=tuple(rules(self.relabel_rule)),
            metric_relabel_rules=tuple(rules(self.metric_relabel_rule)),
            attach_node=None if self.attach_metadata is None else self.attach_metadata.node,
        )


@dataclass
class Arguments:
    forward_to: list[Appendable] = attr(required=True)
    namespaces: list[str] = attr(default=[])
    client: ClientBlock = block()
    selector: SelectorBlock = block()
    clustering: ClusteringBlock = block()
    rule: list[RuleBlock] = block(default_factory=list)
    scrape: ScrapeBlock = block()
    # servicemonitors only: the role of a monitor without serviceDiscoveryRole.
    kubernetes_role: str = attr(default="endpoints")
    # How long a Secret or ConfigMap a monitor names may take to list before the monitor
    # is reported as unable to read it.
    informer_sync_timeout: Duration = attr(default=Duration("1m"))
    # servicemonitors only in Alloy: refuse bearerTokenFile (files of the agent's host).
    disallow_arbitrary_file_access: bool = attr(default=True)
    scrape_class: list[ScrapeClassBlock] = block(default_factory=list)

    def validate(self) -> None:
        if self.kubernetes_role not in ("endpoints", "endpointslice"):
            raise ValueError("only endpoints and endpointslice are supported")
        seen: set[str] = set()
        defaults = 0
        for sc in self.scrape_class:
            if not sc.name:
                raise ValueError("scrape_class name must not be empty")
            if sc.name in seen:
                raise ValueError(f'found multiple scrape_class blocks with name "{sc.name}"')
            seen.add(sc.name)
            defaults += sc.default
            if defaults > 1:
                raise ValueError("only one scrape_class may be marked as default")
        try:
            check_label_selector(self.selector.label_selector())
        except SelectorSyntaxError as exc:
            raise ValueError(f"invalid selector: {exc}") from None

    def defaults(self) -> Defaults:
        return Defaults(
            scrape_interval=float(self.scrape.default_scrape_interval),
            scrape_timeout=float(self.scrape.default_scrape_timeout),
            service_role=self.kubernetes_role,
            sample_limit=self.scrape.default_sample_limit,
            native_histograms=self.scrape.scrape_native_histograms,
            honor_metadata=self.scrape.honor_metadata,
            type_and_unit_labels=self.scrape.enable_type_and_unit_labels,
            allow_files=not self.disallow_arbitrary_file_access,
            scrape_classes=tuple(sc.to_class() for sc in self.scrape_class),
        )

    def watch(self) -> tuple[Any, ...]:
        """What the monitors' informer depends on: a change here restarts the manager."""
        return (self.client, tuple(sorted(set(self.namespaces))), self.selector.label_selector())


class _Operator(Component):
    kind = ""
    in_cluster = InCluster()

    def __init__(self, opts: Options, args: Arguments) -> None:
        super().__init__(opts, args)
        self.fanout = Fanout(list(args.forward_to))
        try:
            self.cluster: ClusterService | None = opts.get_service(services.CLUSTER)
        except services.ServiceNotFound:
            self.cluster = None
        self.manager: Manager | None = None
        self._affine = NodeAffine(self.cluster)
        self._wanted_by_job: dict[str, list[tuple[bytes, L.Labels]]] = {}
        self._dmetrics = DiscoveryMetrics(opts.registry)
        self._error = ""
        self._restart = asyncio.Event()
        opts.registry.register(_ManagerCollector(lambda: self.manager))

    def _ownership(self, args: Arguments) -> Ownership | None:
        if self.cluster is None or not args.clustering.enabled:
            return None
        return self._affine if args.clustering.node_affine else self.cluster

    def _wanted(self, job: str, targets: list[tuple[bytes, L.Labels]]) -> None:
        """One job's wanted targets (every monitor endpoint is a job with its own pool): the
        cluster compares the union with peers', and node affinity needs each one's node."""
        if self.cluster is None:
            return
        if targets:
            self._wanted_by_job[job] = targets
        else:
            self._wanted_by_job.pop(job, None)
        every = [t for ts in self._wanted_by_job.values() for t in ts]
        if self.args.clustering.node_affine:
            self._affine.nodes = {key: target_node(discovered) for key, discovered in every}
        self.cluster.report_targets(self.opts.id, (key for key, _ in every))

    async def run(self) -> None:
        async def start() -> Manager:
            self.manager = await self._start(self.args)
            self._error = ""
            return self.manager

        def failed(err: str) -> None:
            self._error = err
            self.opts.logger.warning("operator component failed", err=err)

        unsubscribe = self.cluster.subscribe(self._rebalance) if self.cluster is not None else None
        try:
            await run_restartable(start, self._stop, self._restart, failed)
        finally:
            if unsubscribe is not None:
                unsubscribe()
            await self._stop()
            self._forget_targets()

    def _forget_targets(self) -> None:
        self._wanted_by_job.clear()
        if self.cluster is not None:
            self.cluster.forget_targets(self.opts.id)

    async def _start(self, args: Arguments) -> Manager:
        m = Manager(
            self.opts.get_service(services.KUBERNETES_INFORMERS),
            args.client.settings(self.in_cluster),
            self.kind,
            self.fanout,
            namespaces=tuple(args.namespaces),
            label_selector=args.selector.label_selector(),
            defaults=args.defaults(),
            extra_rules=rules(args.rule),
            ownership=self._ownership(args),
            seed=self.cluster.seed if self.cluster is not None else None,
            discovery_metrics=self._dmetrics,
            sync_timeout=float(args.informer_sync_timeout),
            on_wanted=self._wanted,
        )
        await m.start()
        return m

    async def _stop(self) -> None:
        m, self.manager = self.manager, None
        if m is not None:
            await m.stop()

    def _rebalance(self) -> None:
        if self.manager is not None:
            self.manager.rebalance()

    async def update(self, args: Arguments) -> None:
        old, self.args = self.args, args
        self.fanout.receivers = list(args.forward_to)
        if not args.clustering.enabled:
            self._forget_targets()  # its pools stop reporting wanted targets without an ownership
        if self.manager is not None and old.watch() == args.watch():
            self.manager.reconfigure(args.defaults(), rules(args.rule), self._ownership(args))
        else:
            self._restart.set()

    def current_health(self) -> Health | None:
        if self._error:
            return Health.unhealthy(self._error)
        m = self.manager
        if m is None:
            return Health.unknown("starting")
        for key, h in m.health():
            if h.healthy is False:
                return Health.unhealthy(f"{key}: {h.reason}: {h.message}")
            if h.healthy is None:
                return Health.unknown(f"waiting for the first list of {key}")
        states = m.monitor_states()
        bad = [f"{ns}/{name}: {st.reason}" for (ns, name), st in states.items() if st.state == "rejected"]
        if bad:
            return Health.unhealthy(
                f"{len(bad)} of {len(states)} {self.kind}s rejected: " + "; ".join(bad))
        return Health.healthy()

    def debug_info(self) -> Any:
        m = self.manager
        if m is None:
            return None
        owner = (self.cluster.name if self.cluster is not None and self.args.clustering.enabled
                 else None)
        per: dict[tuple[str, str], dict[str, Any]] = {}
        for key, r in m.runners():
            got = per.setdefault(key, {"targets": [], "targets_dropped": [],
                                       "targets_dropped_count": 0})
            info = pool_targets(r.pool, owner)
            for kind in ("targets", "targets_dropped", "targets_elsewhere"):
                # The runner's job name is Prometheus' scrape pool ("serviceMonitor/ns/name/0").
                got.setdefault(kind, []).extend({**row, "scrape_pool": r.job.name}
                                                for row in info.get(kind, []))
            # keepDroppedTargets bounds the list; the count is of every dropped target.
            got["targets_dropped_count"] += r.pool.dropped_count
        empty = {"targets": [], "targets_dropped": [], "targets_dropped_count": 0}
        return {
            "monitors": [
                {"namespace": ns, "name": name, "state": st.state, "reason": st.reason,
                 "jobs": st.jobs, **per.get((ns, name), empty)}
                for (ns, name), st in m.monitor_states().items()
            ]
        }


class _ManagerCollector(Collector):
    """The current manager's monitor counts; nothing while none runs."""

    def __init__(self, current: Callable[[], Manager | None]) -> None:
        self.current = current

    def collect(self) -> Iterator[Any]:
        m = self.current()
        if m is not None:
            yield from m.collect()


@register("prometheus.operator.servicemonitors", Arguments, None)
class ServiceMonitors(_Operator):
    kind = "ServiceMonitor"


@register("prometheus.operator.podmonitors", Arguments, None)
class PodMonitors(_Operator):
    kind = "PodMonitor"


@register("prometheus.operator.probes", Arguments, None)
class Probes(_Operator):
    kind = "Probe"
