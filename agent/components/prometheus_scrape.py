"""``prometheus.scrape``: scrape ``targets`` on a schedule and forward the samples to ``forward_to``.

A thin adapter over :class:`agent.scrape.pool.ScrapePool`: arguments become a
``ScrapeConfig``, ``targets`` are synced into the pool, and the pool appends
to one :class:`Fanout` whose receivers are swapped in place when
``forward_to`` changes, so running scrape loops never restart for that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from agent import labels as lbl
from agent.components._common import (
    AuthorizationBlock,
    BasicAuthBlock,
    OAuth2Block,
    TLSBlock,
    check_auth,
    check_proxy,
    client_options,
    targets_to_labels,
)
from agent.components._targetinfo import pool_targets
from agent.runtime import services
from agent.runtime.component import Component, Options
from agent.runtime.registry import register
from agent.scrape.config import DEFAULT_PROTOCOLS, ScrapeConfig
from agent.scrape.loop import SKIP_BACKPRESSURE, SKIP_LATE, SKIP_OVERRUN
from agent.scrape.ownership import Ownership, target_node
from agent.scrape.pool import ScrapePool
from agent.storage import Appendable, Fanout, SampleBatch
from agent.syntax.decode import attr, block
from agent.syntax.value import Duration, Secret


@dataclass
class ClusteringBlock:
    """With ``enabled`` and the agent in a cluster, scrape only the targets this agent owns
    (Alloy's block), plus Shoal's ``node_affine``.

    Without ``--cluster.enabled`` the block changes nothing and every agent
    scrapes every target, as in Alloy.
    """

    enabled: bool = attr(default=False)
    # A target on a Kubernetes node (its kubelet, cAdvisor, its pods) is scraped by the agent
    # whose --cluster.node-name is that node while it is a healthy participant.
    node_affine: bool = attr(default=False)


@dataclass
class Arguments:
    targets: list[dict[str, str]] = attr(required=True)
    forward_to: list[Appendable] = attr(required=True)
    job_name: str = attr(default="")
    extra_metrics: bool = attr(default=False)
    enable_protobuf_negotiation: bool = attr(default=False)
    honor_labels: bool = attr(default=False)
    honor_timestamps: bool = attr(default=True)
    # Alloy's experimental switches: metadata handed downstream with the samples, and
    # Prometheus 3's type-and-unit-labels (__type__ and __unit__ on every series).
    honor_metadata: bool = attr(default=False)
    enable_type_and_unit_labels: bool = attr(default=False)
    track_timestamps_staleness: bool = attr(default=False)
    params: dict[str, list[str]] = attr(default={})
    scrape_classic_histograms: bool = attr(default=False)
    scrape_native_histograms: bool = attr(default=False)
    native_histogram_bucket_limit: int = attr(default=0)
    native_histogram_min_bucket_factor: float = attr(default=0.0)
    scrape_interval: Duration = attr(default=Duration("1m"))
    # Unset: 10s, or the interval when that is shorter (as Prometheus defaults it).
    scrape_timeout: Duration | None = attr(default=None)
    scrape_protocols: list[str] = attr(default_factory=lambda: list(DEFAULT_PROTOCOLS))
    scrape_fallback_protocol: str = attr(default="PrometheusText0.0.4")
    metrics_path: str = attr(default="/metrics")
    scheme: str = attr(default="http")
    body_size_limit: int = attr(default=0)
    sample_limit: int = attr(default=0)
    target_limit: int = attr(default=0)
    label_limit: int = attr(default=0)
    label_name_length_limit: int = attr(default=0)
    label_value_length_limit: int = attr(default=0)
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
    oauth2: OAuth2Block | None = block()
    tls_config: TLSBlock | None = block()
    clustering: ClusteringBlock = block()

    def validate(self) -> None:
        check_auth(self.bearer_token, self.bearer_token_file, self.basic_auth, self.authorization)
        if self.oauth2 is not None and (self.bearer_token or self.bearer_token_file or self.basic_auth
                                        or self.authorization):
            raise ValueError("at most one of basic_auth, authorization, oauth2, bearer_token & "
                             "bearer_token_file must be configured")
        check_proxy(self.proxy_url, self.no_proxy, self.proxy_from_environment, self.proxy_connect_header)
        if not self.metrics_path.startswith("/"):
            raise ValueError(f'metrics_path "{self.metrics_path}" must start with "/"')
        self.to_config("validate").validate()

    def timeout(self) -> float:
        if self.scrape_timeout is None:
            return min(10.0, float(self.scrape_interval))
        return float(self.scrape_timeout)

    def to_config(self, component_id: str) -> ScrapeConfig:
        return ScrapeConfig(
            job_name=self.job_name or component_id,
            scrape_interval=float(self.scrape_interval),
            scrape_timeout=self.timeout(),
            metrics_path=self.metrics_path,
            scheme=self.scheme,
            params={k: list(v) for k, v in self.params.items()},
            honor_labels=self.honor_labels,
            honor_timestamps=self.honor_timestamps,
            honor_metadata=self.honor_metadata,
            type_and_unit_labels=self.enable_type_and_unit_labels,
            track_timestamps_staleness=self.track_timestamps_staleness,
            sample_limit=self.sample_limit,
            label_limit=self.label_limit,
            label_name_length_limit=self.label_name_length_limit,
            label_value_length_limit=self.label_value_length_limit,
            body_size_limit=self.body_size_limit,
            target_limit=self.target_limit,
            extra_metrics=self.extra_metrics,
            scrape_protocols=list(self.scrape_protocols),
            enable_protobuf_negotiation=self.enable_protobuf_negotiation,
            scrape_native_histograms=self.scrape_native_histograms,
            scrape_classic_histograms=self.scrape_classic_histograms,
            native_histogram_bucket_limit=self.native_histogram_bucket_limit,
            native_histogram_min_bucket_factor=self.native_histogram_min_bucket_factor,
            scrape_fallback_protocol=self.scrape_fallback_protocol,
            http=client_options(self),
        )


class ClusterService(Ownership, Protocol):
    """What ``prometheus.scrape`` needs of the cluster service (``services.CLUSTER``)."""

    name: str  # this agent's name in the cluster
    seed: int  # the same on every agent, so a moved target keeps its phase

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` on the event loop after ownership changed; returns an unsubscribe."""
        ...

    def report_targets(self, component_id: str, keys: Iterable[bytes]) -> None:
        """The keys of every target this component wants (owned or not), to compare with peers."""
        ...

    def forget_targets(self, component_id: str) -> None: ...


class NodeAffine:
    """Ownership that hands the cluster each target's node, so the node's agent scrapes it."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.nodes: dict[bytes, str] = {}  # target key -> node, from the last sync

    def owns(self, key: bytes, at: float | None = None) -> bool:
        return bool(self.cluster.owns(key, self.nodes.get(key, ""), at=at))

    def owner(self, key: bytes) -> str:
        return str(self.cluster.owner(key, self.nodes.get(key, "")))

    def switches(self) -> tuple[float, ...]:
        return tuple(self.cluster.switches())


class LiveFeed(Protocol):
    """What ``prometheus.scrape`` needs of the live-debugging feed (``services.LIVE_DEBUGGING``)."""

    def watched(self, component: str) -> set[str]:
        """The ``instance`` labels of this component's targets someone is watching."""
        ...

    def publish(self, component: str, instance: str, samples: list[tuple[lbl.Labels, int, float]]) -> None: ...


class _LiveTap:
    """Forwards every batch; copies a watched target's batch to the live feed.

    One batch is one scrape of one target, so a glance at the first series'
    ``instance`` tells whose it is; nobody watching costs one empty-set check.
    """

    __slots__ = ("component", "fanout", "feed")

    def __init__(self, component: str, fanout: Fanout, feed: LiveFeed) -> None:
        self.component = component
        self.fanout = fanout
        self.feed = feed

    def append(self, batch: SampleBatch) -> None:
        watched = self.feed.watched(self.component)
        if watched and batch.labels:
            instance = lbl.get(lbl.as_labels(batch.labels[0]), "instance")
            if instance in watched:
                rows = list(zip(map(lbl.as_labels, batch.labels), batch.timestamps, batch.values,
                                strict=True))
                self.feed.publish(self.component, instance, rows)
        self.fanout.append(batch)

    def admission(self) -> float:
        return self.fanout.admission()


@register("prometheus.scrape", Arguments, None)
class PrometheusScrape(Component):
    def __init__(self, opts: Options, args: Arguments) -> None:
        super().__init__(opts, args)
        self.fanout = Fanout(list(args.forward_to))
        try:
            self.cluster: ClusterService | None = opts.get_service(services.CLUSTER)
        except services.ServiceNotFound:
            self.cluster = None
        try:
            feed: LiveFeed = opts.get_service(services.LIVE_DEBUGGING)
            self.sink: Appendable = _LiveTap(opts.id, self.fanout, feed)
        except services.ServiceNotFound:
            self.sink = self.fanout
        self._affine = NodeAffine(self.cluster)
        self.pool = self._new_pool(args)
        self._running = False
        opts.registry.register(_MovedCollector(self))

    def _new_pool(self, args: Arguments) -> ScrapePool:
        if self.cluster is None:
            return ScrapePool(args.to_config(self.opts.id), self.sink)
        return ScrapePool(
            args.to_config(self.opts.id), self.sink, seed=self.cluster.seed, ownership=self._ownership(args)
        )

    def _ownership(self, args: Arguments) -> Ownership | None:
        if self.cluster is None or not args.clustering.enabled:
            return None
        return self._affine if args.clustering.node_affine else self.cluster

    def _sync(self, args: Arguments) -> None:
        if self.cluster is not None and not args.clustering.enabled:
            self.cluster.forget_targets(self.opts.id)
        self.pool.on_wanted = self._wanted
        self.pool.sync(targets_to_labels(args.targets))

    def _wanted(self, targets: list[tuple[bytes, lbl.Labels]]) -> None:
        """The pool's wanted targets, before it asks who owns them: the cluster compares their
        keys with peers', and node affinity needs each one's node."""
        if self.cluster is None:
            return
        if self.args.clustering.node_affine:
            self._affine.nodes = {key: target_node(discovered) for key, discovered in targets}
        self.cluster.report_targets(self.opts.id, (key for key, _ in targets))

    async def run(self) -> None:
        self._running = True
        unsubscribe = self.cluster.subscribe(self.pool.rebalance) if self.cluster is not None else None
        try:
            self._sync(self.args)
            await super().run()
        finally:
            self._running = False
            if unsubscribe is not None:
                unsubscribe()
            if self.cluster is not None:
                self.cluster.forget_targets(self.opts.id)
            await self.pool.stop()

    async def update(self, args: Arguments) -> None:
        self.args = args
        self.fanout.receivers = list(args.forward_to)
        if self._running:
            self.pool.ownership = self._ownership(args)
            self.pool.update_config(args.to_config(self.opts.id))
            self._sync(args)
        else:
            self.pool = self._new_pool(args)

    def debug_info(self) -> dict[str, Any]:
        info = pool_targets(self.pool, self.cluster.name if self.cluster is not None else None)
        skipped = {reason: n for reason, n in self.pool.skipped.items() if n}
        if skipped:
            info["scrapes_skipped"] = skipped
        share = self.fanout.admission()
        if share < 1.0:
            info["shedding"] = {
                "share": round(share, 3),
                "reason": "remote write downstream cannot send what is scraped: ticks are skipped "
                "(reason backpressure); its debug info says which endpoint and how far behind",
            }
        return info


class _MovedCollector(Collector):
    """Alloy's ``prometheus_scrape_targets_moved_total``, read from the component's current pool."""

    def __init__(self, component: PrometheusScrape) -> None:
        self.component = component

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "prometheus_scrape_targets_moved",
            "Number of targets that have moved from this instance to another one in the cluster.",
            value=self.component.pool.moved_away,
        )
        skipped = CounterMetricFamily(
            "shoal_scrape_skipped",
            "Scrapes not made because the agent could not start them on time (reason: late, "
            "the event loop reached the tick too late; overrun, the previous scrape ran past it; "
            "backpressure, remote write downstream could not send what the scrapes produced).",
            labels=["reason"],
        )
        for reason in (SKIP_LATE, SKIP_OVERRUN, SKIP_BACKPRESSURE):
            skipped.add_metric([reason], self.component.pool.skipped[reason])
        yield skipped
