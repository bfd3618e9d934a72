"""``prometheus.remote_write``: samples into a WAL under --storage.path, sent from it to each endpoint.

Exports ``receiver``: the engine itself, the same object for the
component's lifetime, so a reload updates endpoints in place and the WAL
(``<storage.path>/<component id>/wal``) stays open.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from agent.components._common import (
    AuthorizationBlock,
    BasicAuthBlock,
    OAuth2Block,
    RuleBlock,
    TLSBlock,
    Unstarted,
    check_auth,
    check_proxy,
    check_url,
    client_options,
    reveal,
    rules,
)
from agent.loopclock import LoopClock
from agent.remote import EndpointConfig, MetadataConfig, QueueConfig, RemoteWrite, WALOptions
from agent.remote.codec_v2 import V1
from agent.remote.config import parse_bytes
from agent.runtime import services
from agent.runtime.component import Component, Options
from agent.runtime.registry import register
from agent.storage import Appendable
from agent.syntax.decode import attr, block
from agent.syntax.value import Duration, Secret

MIN_DISK_BUDGET = 4 << 20  # four segments of the 1 MiB minimum: less cannot hold a working WAL


@dataclass
class QueueBlock:
    capacity: int = attr(default=10000)
    min_shards: int = attr(default=1)
    max_shards: int = attr(default=50)
    max_samples_per_send: int = attr(default=2000)
    batch_send_deadline: Duration = attr(default=Duration("5s"))
    min_backoff: Duration = attr(default=Duration("30ms"))
    max_backoff: Duration = attr(default=Duration("5s"))
    retry_on_http_429: bool = attr(default=True)
    sample_age_limit: Duration = attr(default=Duration("0s"))
    # Shoal's own, not Alloy's (docs/wal.md, "Catch-up after an outage"): the pace of the
    # drain after a failure, as multiples of the steady request and sample rates, and how many
    # times max_samples_per_send a catch-up batch may hold.
    catchup_request_factor: float = attr(default=1.5)
    catchup_sample_factor: float = attr(default=3.0)
    catchup_batch_factor: int = attr(default=4)

    def validate(self) -> None:
        if self.catchup_request_factor < 1 or self.catchup_sample_factor < 1 or self.catchup_batch_factor < 1:
            raise ValueError("catchup_request_factor, catchup_sample_factor and catchup_batch_factor must be "
                             "at least 1 (1: no faster than steady)")
        for name in ("capacity", "min_shards", "max_shards", "max_samples_per_send"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be greater than 0")
        if self.min_shards > self.max_shards:
            raise ValueError("min_shards must not be greater than max_shards")
        if self.min_backoff > self.max_backoff:
            raise ValueError("min_backoff must not be greater than max_backoff")
        if self.batch_send_deadline <= 0:
            raise ValueError("batch_send_deadline must be greater than 0s")
        if self.min_backoff < 0 or self.sample_age_limit < 0:
            raise ValueError("min_backoff and sample_age_limit must not be negative")

    def to_config(self) -> QueueConfig:
        return QueueConfig(
            capacity=self.capacity,
            max_shards=self.max_shards,
            min_shards=self.min_shards,
            max_samples_per_send=self.max_samples_per_send,
            batch_send_deadline=float(self.batch_send_deadline),
            min_backoff=float(self.min_backoff),
            max_backoff=float(self.max_backoff),
            retry_on_http_429=self.retry_on_http_429,
            sample_age_limit=float(self.sample_age_limit),
            catchup_requests=float(self.catchup_request_factor),
            catchup_samples=float(self.catchup_sample_factor),
            catchup_batch=self.catchup_batch_factor,
        )


@dataclass
class MetadataBlock:
    """How Remote-Write 1.0 sends metric metadata (2.0 sends it with each series)."""

    send: bool = attr(default=True)
    send_interval: Duration = attr(default=Duration("1m"))
    max_samples_per_send: int = attr(default=2000)

    def validate(self) -> None:
        if self.send_interval <= 0:
            raise ValueError("send_interval must be greater than 0s")
        if self.max_samples_per_send <= 0:
            raise ValueError("max_samples_per_send must be greater than 0")

    def to_config(self) -> MetadataConfig:
        return MetadataConfig(
            send=self.send,
            send_interval=float(self.send_interval),
            max_samples_per_send=self.max_samples_per_send,
        )


@dataclass
class EndpointBlock:
    url: str = attr(required=True)
    name: str = attr(default="")
    remote_timeout: Duration = attr(default=Duration("30s"))
    headers: dict[str, Secret] = attr(default={})
    protobuf_message: Literal["prometheus.WriteRequest", "io.prometheus.write.v2.Request"] = attr(default=V1)
    send_exemplars: bool = attr(default=True)
    send_native_histograms: bool = attr(default=False)
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
    oauth2: OAuth2Block | None = block()
    queue_config: QueueBlock = block()
    metadata_config: MetadataBlock = block()
    write_relabel_config: list[RuleBlock] = block()

    def validate(self) -> None:
        check_url(self.url)
        check_proxy(self.proxy_url, self.no_proxy, self.proxy_from_environment, self.proxy_connect_header)
        if self.remote_timeout <= 0:
            raise ValueError("remote_timeout must be greater than 0")
        check_auth(self.bearer_token, self.bearer_token_file, self.basic_auth, self.authorization)
        if self.oauth2 is not None and (self.bearer_token or self.bearer_token_file or self.basic_auth
                                        or self.authorization):
            raise ValueError("at most one of basic_auth, authorization, oauth2, bearer_token & bearer_token_file "
                             "must be configured")

    def to_config(self) -> EndpointConfig:
        return EndpointConfig(
            name=self.name,
            url=self.url,
            remote_timeout=float(self.remote_timeout),
            headers={k: reveal(v) for k, v in self.headers.items()},
            http=client_options(self),
            send_exemplars=self.send_exemplars,
            send_native_histograms=self.send_native_histograms,
            protobuf_message=self.protobuf_message,
            oauth2=self.oauth2.to_config() if self.oauth2 is not None else None,
            write_relabel_rules=rules(self.write_relabel_config),
            queue=(self.queue_config or QueueBlock()).to_config(),
            metadata=(self.metadata_config or MetadataBlock()).to_config(),
        )


@dataclass
class WALBlock:
    """Alloy's ``wal`` block, plus Shoal's ``disk_budget`` (docs/wal.md, "Disk budget").

    ``disk_budget`` is a byte count or a size string ("512MiB", "2GB": binary
    multiples, as Prometheus reads ``--storage.tsdb.retention.size``); 0 means none.
    """

    truncate_frequency: Duration = attr(default=Duration("2h"))
    min_keepalive_time: Duration = attr(default=Duration("5m"))
    max_keepalive_time: Duration = attr(default=Duration("8h"))
    disk_budget: int | str = attr(default=0)

    def validate(self) -> None:
        if self.truncate_frequency <= 0:
            raise ValueError("truncate_frequency must be greater than 0s")
        if self.min_keepalive_time < 0:
            raise ValueError("min_keepalive_time must not be negative")
        if self.max_keepalive_time <= self.min_keepalive_time:
            raise ValueError("min_keepalive_time must be smaller than max_keepalive_time")
        self.budget_bytes()

    def budget_bytes(self) -> int:
        try:
            n = parse_bytes(self.disk_budget)
        except ValueError as exc:
            raise ValueError(f"disk_budget: {exc}") from None
        if 0 < n < MIN_DISK_BUDGET:
            raise ValueError(f"disk_budget must be 0 (none) or at least 4MiB, got {n} bytes")
        return n

    def to_options(self) -> WALOptions:
        return WALOptions(
            truncate_frequency=float(self.truncate_frequency),
            min_keepalive_time=float(self.min_keepalive_time),
            max_keepalive_time=float(self.max_keepalive_time),
            disk_budget_bytes=self.budget_bytes(),
        )


@dataclass
class Arguments:
    external_labels: dict[str, str] = attr(default={})
    endpoint: list[EndpointBlock] = block()
    wal: WALBlock = block()

    def validate(self) -> None:
        names = [e.name for e in self.endpoint if e.name]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f'endpoint name "{sorted(dup)[0]}" is used more than once')
        urls = [e.url for e in self.endpoint if not e.name]
        dup = {u for u in urls if urls.count(u) > 1}
        if dup:
            raise ValueError("two unnamed endpoints have the same url; give them names")

    def settings(self) -> tuple[list[EndpointConfig], dict[str, str], WALOptions]:
        return [e.to_config() for e in self.endpoint], dict(self.external_labels), (self.wal or WALBlock()).to_options()


@dataclass
class Exports:
    receiver: Appendable = attr(default_factory=Unstarted)


@register("prometheus.remote_write", Arguments, Exports)
class PrometheusRemoteWrite(Component):
    def __init__(self, opts: Options, args: Arguments) -> None:
        super().__init__(opts, args)
        endpoints, external, wal = args.settings()
        # The engine's metrics go into the component's registry; the runtime adds component_id.
        try:  # the process' loop clock: sends wait for the cluster's handoffs after a stall
            clock: LoopClock | None = opts.get_service(services.LOOP_CLOCK)
        except services.ServiceNotFound:
            clock = None
        self.rw = RemoteWrite(opts.data_path / "wal", endpoints, external, wal, registry=opts.registry,
                              clock=clock)
        opts.set_exports(Exports(receiver=self.rw))

    async def run(self) -> None:
        try:
            await self.rw.start()
            await super().run()
        finally:
            await self.rw.stop()

    async def update(self, args: Arguments) -> None:
        self.args = args
        await self.rw.update(*args.settings())

    def debug_info(self) -> dict[str, Any]:
        return self.rw.status()

    def write_progress(self) -> tuple[float, float]:
        """(WAL fsync seconds, remote-write lag seconds), for the cluster's proof of progress."""
        return self.rw.write_progress()
