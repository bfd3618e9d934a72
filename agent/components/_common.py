"""Blocks several components share, spelled as Alloy spells them, and their conversion to engine settings.

Credentials are :class:`Secret` here so the API shows ``(secret)``; they are
revealed only when handed to the engine's :class:`HTTPClientConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from agent import labels as lbl
from agent import relabel
from agent.httpconfig import (
    Authorization,
    BasicAuth,
    HTTPClientConfig,
    OAuth2Config,
    ProxyConfig,
    TLSConfig,
)
from agent.labels import Labels
from agent.syntax.decode import attr, block
from agent.syntax.value import Secret


def reveal(s: Secret | str | None) -> str:
    """A secret's text for an engine's settings: the one way components reveal one."""
    if s is None:
        return ""
    return s.reveal() if isinstance(s, Secret) else s


@dataclass
class RuleBlock:
    """``rule { ... }``: one relabel rule, with Prometheus' defaults."""

    source_labels: list[str] = attr(default=[])
    separator: str = attr(default=relabel.DEFAULT_SEPARATOR)
    regex: str = attr(default=relabel.DEFAULT_REGEX)
    modulus: int = attr(default=0)
    target_label: str = attr(default="")
    replacement: str = attr(default=relabel.DEFAULT_REPLACEMENT)
    action: str = attr(default="replace")

    def to_rule(self) -> relabel.Rule:
        return relabel.Rule(
            source_labels=list(self.source_labels),
            separator=self.separator,
            regex=self.regex,
            modulus=self.modulus,
            target_label=self.target_label,
            replacement=self.replacement,
            action=self.action.lower(),
        )

    def validate(self) -> None:
        self.to_rule().validate()


def rules(blocks: list[RuleBlock]) -> list[relabel.Rule]:
    return [b.to_rule() for b in blocks]


@dataclass
class BasicAuthBlock:
    username: str = attr(default="")
    password: Secret | None = attr(default=None)
    password_file: str = attr(default="")

    def validate(self) -> None:
        if self.password and self.password_file:
            raise ValueError("at most one of basic_auth password & password_file must be configured")


@dataclass
class AuthorizationBlock:
    type: str = attr(default="Bearer")
    credentials: Secret | None = attr(default=None)
    credentials_file: str = attr(default="")

    def validate(self) -> None:
        if self.credentials and self.credentials_file:
            raise ValueError("at most one of authorization credentials & credentials_file must be configured")
        if self.type.lower() == "basic":
            raise ValueError("authorization type cannot be set to \"basic\", use \"basic_auth\" instead")


@dataclass
class TLSBlock:
    ca_pem: str = attr(default="")
    ca_file: str = attr(default="")
    cert_pem: str = attr(default="")
    cert_file: str = attr(default="")
    key_pem: Secret | None = attr(default=None)
    key_file: str = attr(default="")
    server_name: str = attr(default="")
    insecure_skip_verify: bool = attr(default=False)
    min_version: str = attr(default="")

    def validate(self) -> None:
        if self.ca_pem and self.ca_file:
            raise ValueError("at most one of ca_pem and ca_file must be configured")
        if self.cert_pem and self.cert_file:
            raise ValueError("at most one of cert_pem and cert_file must be configured")
        if self.key_pem and self.key_file:
            raise ValueError("at most one of key_pem and key_file must be configured")
        if bool(self.cert_pem or self.cert_file) != bool(self.key_pem or self.key_file):
            raise ValueError("exactly one of key_pem or key_file must be configured when a client certificate is configured")
        if self.min_version and self.min_version.upper() not in ("TLS10", "TLS11", "TLS12", "TLS13"):
            raise ValueError(f'unknown TLS version "{self.min_version}"')


def check_proxy(proxy_url: str, no_proxy: str, proxy_from_environment: bool,
                proxy_connect_header: dict[str, list[Secret]] | None) -> None:
    """A usable proxy URL and Prometheus' exclusions between the proxy settings."""
    if proxy_url:
        check_url(proxy_url, "proxy_url")
    ProxyConfig(proxy_url, no_proxy, proxy_from_environment,
                {k: [] for k in (proxy_connect_header or {})}).validate()


def reveal_headers(headers: dict[str, list[Secret]] | None) -> dict[str, list[str]]:
    return {k: [reveal(v) for v in vs] for k, vs in (headers or {}).items()}


@dataclass
class OAuth2Block:
    """Alloy's ``oauth2`` block: OAuth 2.0 client credentials (agent/oauth2.py), with the
    token endpoint's own TLS and proxy settings."""

    client_id: str = attr(default="")
    client_secret: Secret | None = attr(default=None)
    client_secret_file: str = attr(default="")
    scopes: list[str] = attr(default=[])
    token_url: str = attr(default="")
    endpoint_params: dict[str, str] = attr(default={})
    proxy_url: str = attr(default="")
    no_proxy: str = attr(default="")
    proxy_from_environment: bool = attr(default=False)
    proxy_connect_header: dict[str, list[Secret]] = attr(default={})
    tls_config: TLSBlock | None = block()

    def validate(self) -> None:
        check_url(self.token_url, "token_url")
        if self.client_secret and self.client_secret_file:
            raise ValueError("at most one of oauth2 client_secret & client_secret_file must be configured")
        check_proxy(self.proxy_url, self.no_proxy, self.proxy_from_environment, self.proxy_connect_header)

    def to_config(self) -> OAuth2Config:
        return OAuth2Config(
            client_id=self.client_id,
            client_secret=reveal(self.client_secret),
            client_secret_file=self.client_secret_file,
            scopes=list(self.scopes),
            token_url=self.token_url,
            endpoint_params=dict(self.endpoint_params),
            proxy_url=self.proxy_url,
            no_proxy=self.no_proxy,
            proxy_from_environment=self.proxy_from_environment,
            proxy_connect_header=reveal_headers(self.proxy_connect_header),
            tls_config=http_client(tls_config=self.tls_config).tls_config,
        )


def check_auth(
    bearer_token: Secret | None,
    bearer_token_file: str,
    basic_auth: BasicAuthBlock | None,
    authorization: AuthorizationBlock | None,
) -> None:
    """Alloy allows one way of authenticating per client."""
    used = [
        n for n, v in (
            ("basic_auth", basic_auth),
            ("authorization", authorization),
            ("bearer_token", bearer_token or None),
            ("bearer_token_file", bearer_token_file or None),
        ) if v is not None
    ]
    if len(used) > 1:
        raise ValueError(f"at most one of {', '.join(used)} must be configured")


def http_client(
    *,
    bearer_token: Secret | None = None,
    bearer_token_file: str = "",
    basic_auth: BasicAuthBlock | None = None,
    authorization: AuthorizationBlock | None = None,
    tls_config: TLSBlock | None = None,
    proxy_url: str = "",
    no_proxy: str = "",
    proxy_from_environment: bool = False,
    proxy_connect_header: dict[str, list[Secret]] | None = None,
    oauth2: OAuth2Block | None = None,
    follow_redirects: bool = True,
    enable_http2: bool = True,
    headers: dict[str, Secret | str] | None = None,
) -> HTTPClientConfig:
    """The engine's client settings from the decoded blocks; the one place secrets are revealed."""
    return HTTPClientConfig(
        basic_auth=None if basic_auth is None else BasicAuth(
            basic_auth.username, reveal(basic_auth.password), basic_auth.password_file
        ),
        authorization=None if authorization is None else Authorization(
            authorization.type or "Bearer", reveal(authorization.credentials), authorization.credentials_file
        ),
        bearer_token=reveal(bearer_token),
        bearer_token_file=bearer_token_file,
        tls_config=None if tls_config is None else TLSConfig(
            ca_pem=tls_config.ca_pem,
            ca_file=tls_config.ca_file,
            cert_pem=tls_config.cert_pem,
            cert_file=tls_config.cert_file,
            key_pem=reveal(tls_config.key_pem),
            key_file=tls_config.key_file,
            server_name=tls_config.server_name,
            insecure_skip_verify=tls_config.insecure_skip_verify,
            min_version=tls_config.min_version,
        ),
        proxy_url=proxy_url,
        no_proxy=no_proxy,
        proxy_from_environment=proxy_from_environment,
        proxy_connect_header=reveal_headers(proxy_connect_header),
        oauth2=oauth2.to_config() if oauth2 is not None else None,
        follow_redirects=follow_redirects,
        enable_http2=enable_http2,
        headers={k: reveal(v) for k, v in (headers or {}).items()},
    )


def client_options(args: Any) -> HTTPClientConfig:
    """The client settings from the HTTP options every Alloy component spells the same way
    (bearer_token, bearer_token_file, basic_auth, authorization, tls_config, proxy_url,
    follow_redirects, enable_http2; no_proxy, proxy_from_environment, proxy_connect_header
    and oauth2 where the component has them), read from a component's decoded arguments."""
    return http_client(
        bearer_token=args.bearer_token,
        bearer_token_file=args.bearer_token_file,
        basic_auth=args.basic_auth,
        authorization=args.authorization,
        tls_config=args.tls_config,
        proxy_url=args.proxy_url,
        no_proxy=getattr(args, "no_proxy", ""),
        proxy_from_environment=getattr(args, "proxy_from_environment", False),
        proxy_connect_header=getattr(args, "proxy_connect_header", None),
        oauth2=getattr(args, "oauth2", None),
        follow_redirects=args.follow_redirects,
        enable_http2=args.enable_http2,
    )


def check_url(url: str, what: str = "url", schemes: tuple[str, ...] = ("http", "https")) -> None:
    """A URL the HTTP client can use: a known scheme and a host."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f'{what} "{url}" is malformed: {exc}') from None
    if parts.scheme not in schemes:
        raise ValueError(f'{what} "{url}" must use {" or ".join(schemes)}, not "{parts.scheme}"')
    if not parts.hostname:
        raise ValueError(f'{what} "{url}" has no host')


def targets_to_labels(targets: list[dict[str, str]]) -> list[Labels]:
    return [lbl.from_dict(t) for t in targets]


def labels_to_target(labels: Labels) -> dict[str, str]:
    return dict(labels)


class Unstarted:
    """Stands in for a receiver in exports checked before the component exists; drops what it gets."""

    def append(self, batch: object) -> None:
        return None
