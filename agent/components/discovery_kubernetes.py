"""``discovery.kubernetes``: targets from the Kubernetes API, with Alloy's arguments; exports ``targets``.

Thin: the arguments become a discovery :class:`Config` and client settings,
the process' shared informers come from the ``services.KUBERNETES_INFORMERS`` service,
and a :class:`Discoverer` (agent/discovery/kubernetes.py) does the rest.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from agent.components._common import (
    AuthorizationBlock,
    BasicAuthBlock,
    TLSBlock,
    check_auth,
    check_proxy,
    check_url,
    client_options,
)
from agent.components._restartable import run_restartable
from agent.discovery.kubeclient import ClientSettings, InCluster
from agent.discovery.kubernetes import (
    ALLOWED_SELECTORS,
    ROLES,
    Config,
    Discoverer,
    Metrics,
    Selector,
)
from agent.discovery.selectors import (
    SelectorSyntaxError,
    check_field_selector,
    check_label_selector,
)
from agent.runtime import services
from agent.runtime.component import Component, Options
from agent.runtime.health import Health, State
from agent.runtime.registry import register
from agent.syntax.decode import attr, block
from agent.syntax.value import Secret


@dataclass
class NamespacesBlock:
    own_namespace: bool = attr(default=False)
    names: list[str] = attr(default=[])


@dataclass
class SelectorBlock:
    role: str = attr(required=True)
    label: str = attr(default="")
    field: str = attr(default="")


@dataclass
class AttachMetadataBlock:
    node: bool = attr(default=False)
    namespace: bool = attr(default=False)


@dataclass
class Arguments:
    role: str = attr(required=True)
    api_server: str = attr(default="")
    kubeconfig_file: str = attr(default="")
    namespaces: NamespacesBlock = block()
    selectors: list[SelectorBlock] = block()
    attach_metadata: AttachMetadataBlock = block()
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
        """Prometheus' checks of a kubernetes_sd_config, with its messages."""
        if self.role not in ROLES:
            raise ValueError(
                f'invalid role "{self.role}", expecting one of: pod, service, endpoints, '
                "endpointslice, node or ingress"
            )
        check_auth(self.bearer_token, self.bearer_token_file, self.basic_auth, self.authorization)
        check_proxy(self.proxy_url, self.no_proxy, self.proxy_from_environment,
                    self.proxy_connect_header)
        if self.api_server:
            check_url(self.api_server, "api_server")
        if self.api_server and self.kubeconfig_file:
            raise ValueError("cannot use 'kubeconfig_file' and 'api_server' simultaneously")
        custom_http = self._custom_http()
        if self.kubeconfig_file and custom_http:
            raise ValueError(
                "cannot use a custom HTTP client configuration together with 'kubeconfig_file'"
            )
        if not self.api_server and custom_http:
            raise ValueError(
                "to use custom HTTP client configuration please provide the 'api_server' URL explicitly"
            )
        if self.namespaces.own_namespace and self.api_server:
            raise ValueError("cannot use 'api_server' and 'namespaces.own_namespace' simultaneously")
        if self.namespaces.own_namespace and self.kubeconfig_file:
            raise ValueError(
                "cannot use 'kubeconfig_file' and 'namespaces.own_namespace' simultaneously"
            )
        seen = set()
        allowed = ALLOWED_SELECTORS[self.role]
        for s in self.selectors:
            if s.role in seen:
                raise ValueError(f"duplicated selector role: {s.role}")
            seen.add(s.role)
            if s.role not in allowed:
                raise ValueError(f"{self.role} role supports only {', '.join(allowed)} selectors")
            try:
                check_label_selector(s.label)
            except SelectorSyntaxError as exc:
                raise ValueError(f'invalid label selector "{s.label}": {exc}') from None
            try:
                check_field_selector(s.field)
            except SelectorSyntaxError as exc:
                raise ValueError(f'invalid field selector "{s.field}": {exc}') from None

    def _custom_http(self) -> bool:
        return bool(
            self.bearer_token or self.bearer_token_file or self.proxy_url or self.basic_auth
            or self.no_proxy or self.proxy_from_environment or self.proxy_connect_header
            or self.authorization or self.tls_config or not self.follow_redirects
            or not self.enable_http2
        )

    def settings(self, in_cluster: InCluster) -> ClientSettings:
        return ClientSettings(
            api_server=self.api_server,
            kubeconfig_file=self.kubeconfig_file,
            http=client_options(self),
            in_cluster=in_cluster,
        )

    def config(self, own_namespace: str) -> Config:
        names = list(self.namespaces.names)
        if self.namespaces.own_namespace and own_namespace:
            names.append(own_namespace)
        return Config(
            role=self.role,
            namespaces=tuple(names),
            selectors={s.role: Selector(s.label, s.field) for s in self.selectors},
            attach_node=self.attach_metadata.node,
            attach_namespace=self.attach_metadata.namespace,
        )


@dataclass
class Exports:
    targets: list[dict[str, str]] = attr(default=[])


def _own_namespace(in_cluster: InCluster) -> str:
    """The namespace the agent's pod runs in, from its service account."""
    try:
        return in_cluster.namespace_file.read_text().strip()
    except OSError:
        return ""


@register("discovery.kubernetes", Arguments, Exports)
class DiscoveryKubernetes(Component):
    # Where the service account is, for in-cluster credentials and own_namespace.
    in_cluster = InCluster()

    def __init__(self, opts: Options, args: Arguments) -> None:
        super().__init__(opts, args)
        self._discoverer: Discoverer | None = None
        self._metrics = Metrics(opts.registry)
        self._error = ""
        self._restart = asyncio.Event()
        opts.set_exports(Exports())

    async def run(self) -> None:
        async def start() -> Discoverer:
            self._discoverer = await self._start(self.args)
            self._error = ""
            return self._discoverer

        def failed(err: str) -> None:
            self._error = err
            self.opts.logger.warning("kubernetes discovery failed", err=err)

        try:
            await run_restartable(start, self._stop, self._restart, failed)
        finally:
            await self._stop()

    async def _start(self, args: Arguments) -> Discoverer:
        informers = self.opts.get_service(services.KUBERNETES_INFORMERS)
        d = Discoverer(
            informers,
            args.settings(self.in_cluster),
            args.config(_own_namespace(self.in_cluster)),
            self._publish,
            self._metrics,
        )
        await d.start()
        return d

    async def _stop(self) -> None:
        d, self._discoverer = self._discoverer, None
        if d is not None:
            await d.stop()

    def _publish(self, targets: list[dict[str, str]]) -> None:
        self.opts.set_exports(Exports(targets=targets))

    async def update(self, args: Arguments) -> None:
        # New informers for the new arguments; the old targets stay until the new ones list.
        self.args = args
        self._restart.set()

    def current_health(self) -> Health | None:
        if self._error:
            return Health.unhealthy(self._error)
        d = self._discoverer
        if d is None:
            return Health.unknown("starting")
        waiting = []
        for key, h in d.health():
            if h.healthy is False:
                return Health(State.UNHEALTHY, f"{key}: {h.reason}: {h.message}", h.since)
            if h.healthy is None:
                waiting.append(str(key))
        if waiting:
            return Health.unknown("waiting for the first list of " + ", ".join(waiting))
        return Health.healthy()

    def debug_info(self) -> Any:
        d = self._discoverer
        if d is None:
            return None
        return {
            "targets": len(d.targets()),
            "informers": [
                {"key": str(key), "healthy": h.healthy, "reason": h.reason, "message": h.message}
                for key, h in d.health()
            ],
        }
