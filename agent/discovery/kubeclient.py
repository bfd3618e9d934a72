"""A kubernetes-asyncio client from wherever the credentials are: the pod's service account
(in-cluster), a kubeconfig file, or an explicit API server with Alloy's HTTP client options.

Kubernetes rotates service-account tokens (bound tokens live an hour); like client-go, the
token file is read again once its copy is a minute old, and at once after a 401, so a
rotated token is used without a restart. Objects come back as plain dicts: informers keep
thousands of them, and the generated models cost several times the memory and CPU.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from agent.httpclient import connect_headers
from agent.httpconfig import HTTPClientConfig
from agent.httpproxy import proxy_for

if TYPE_CHECKING:
    from kubernetes_asyncio import client as kclient

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_REREAD = 60.0  # client-go's cached token source re-reads the file after a minute


class KubeConfigError(ValueError):
    """No usable connection settings (with the reason)."""


class APIError(Exception):
    """A non-2xx answer of the API server: its status, reason and (Status JSON) body."""

    def __init__(self, status: int, reason: str | None, body: str) -> None:
        super().__init__(f"{status} {reason or ''}".strip())
        self.status = status
        self.reason = reason
        self.body = body


@dataclass(frozen=True)
class InCluster:
    """Where a pod finds its service account; overridable for tests."""

    token_file: Path = SA_DIR / "token"
    ca_file: Path = SA_DIR / "ca.crt"
    namespace_file: Path = SA_DIR / "namespace"
    host: str = ""  # default: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT

    def server(self, environ: Mapping[str, str] = os.environ) -> str:
        if self.host:
            return self.host
        host = environ.get("KUBERNETES_SERVICE_HOST", "")
        port = environ.get("KUBERNETES_SERVICE_PORT", "")
        if not host or not port:
            raise KubeConfigError("not in a cluster: KUBERNETES_SERVICE_HOST/PORT are unset "
                                  "(set api_server or kubeconfig_file)")
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{port}"


@dataclass(frozen=True)
class ClientSettings:
    """One of: api_server (+ http options), kubeconfig_file, or neither (in-cluster)."""

    api_server: str = ""
    kubeconfig_file: str = ""
    http: HTTPClientConfig = field(default_factory=HTTPClientConfig)
    in_cluster: InCluster = InCluster()
    token_reread: float = TOKEN_REREAD

    def identity(self) -> tuple[Any, ...]:
        """What makes two settings share a connection (never logged: it holds secrets)."""
        return (self.api_server, self.kubeconfig_file, _http_identity(self.http),
                self.in_cluster, self.token_reread)


def _http_identity(http: HTTPClientConfig) -> tuple[Any, ...]:
    ba = http.basic_auth
    au = http.authorization
    tls = http.tls_config
    return (
        (ba.username, ba.password, ba.password_file) if ba else None,
        (au.type, au.credentials, au.credentials_file) if au else None,
        http.bearer_token, http.bearer_token_file, http.proxy_url, http.no_proxy,
        http.proxy_from_environment,
        tuple(sorted((k, tuple(v)) for k, v in http.proxy_connect_header.items())),
        tuple(sorted(http.headers.items())),
        (tls.ca_pem, tls.ca_file, tls.cert_pem, tls.cert_file, tls.key_pem, tls.key_file,
         tls.server_name, tls.insecure_skip_verify) if tls else None,
    )


class _Credentials:
    """The Authorization header, from a file read again when stale or after a 401."""

    def __init__(self, http: HTTPClientConfig | None, token_file: Path | None,
                 reread: float) -> None:
        self._http = http
        self._token_file = token_file
        self._reread = reread
        self._value: str | None = None
        self._read_at = float("-inf")

    def invalidate(self) -> None:
        self._read_at = float("-inf")

    def header(self) -> str | None:
        now = time.monotonic()
        if self._value is None or now - self._read_at >= self._reread:
            if self._token_file is not None:
                token = self._token_file.read_text().strip()
                if not token:
                    raise KubeConfigError(f"token file {self._token_file} is empty")
                self._value = "Bearer " + token
            elif self._http is not None:
                self._value = self._http.auth_header()
            self._read_at = now
        return self._value

    async def hook(self, conf: kclient.Configuration) -> None:
        # kubernetes-asyncio calls this before every request.
        value = self.header()
        if value is None:
            conf.api_key.pop("BearerToken", None)
        else:
            conf.api_key["BearerToken"] = value


class KubeClient:
    """An ApiClient plus what discovery needs from it: raw list and watch by path, the
    namespace the agent runs in, and a way to drop cached credentials after a 401."""

    def __init__(self, api: kclient.ApiClient, namespace: str,
                 credentials: _Credentials | None = None) -> None:
        self.api = api
        self.namespace = namespace
        self._credentials = credentials

    @property
    def host(self) -> str:
        return str(self.api.configuration.host)

    def invalidate_credentials(self) -> None:
        if self._credentials is not None:
            self._credentials.invalidate()

    async def close(self) -> None:
        await self.api.close()

    async def _get(self, path: str, query: Mapping[str, str], timeout: float | None,
                   ) -> Any:
        resp = await self.api.call_api(
            path, "GET", query_params=list(query.items()),
            header_params={"Accept": "application/json"}, auth_settings=["BearerToken"],
            _preload_content=False, _request_timeout=timeout)
        if not 200 <= resp.status < 300:
            # Unread, kubernetes-asyncio would hand back an error body as if it were data.
            try:
                body = (await resp.read()).decode("utf-8", "replace")
            finally:
                resp.release()
            raise _api_error(resp.status, resp.reason, body)
        return resp

    async def get_json(self, path: str, query: Mapping[str, str] | None = None,
                       timeout: float = 60.0) -> dict[str, Any]:
        """One GET; raises APIError for a non-2xx answer."""
        resp = await self._get(path, query or {}, timeout)
        try:
            return json.loads(await resp.read())
        finally:
            resp.release()

    async def watch_lines(self, path: str, query: Mapping[str, str],
                          timeout: float) -> AsyncIterator[bytes]:
        """The lines of a watch stream until the server ends it (or `timeout` passes). The
        first item is b"" as soon as the server has accepted the watch, so a caller knows the
        connection is good before any event arrives."""
        resp = await self._get(path, {**query, "watch": "true"},
                               aiohttp.ClientTimeout(total=timeout, sock_read=timeout))
        try:
            yield b""
            while True:
                line = await resp.content.readline()
                if not line:
                    return
                if line.strip():
                    yield line
        finally:
            resp.release()


def _api_error(status: int, reason: str | None, body: str) -> APIError:
    return APIError(status, reason, body)


def _write_private(pem: str, suffix: str) -> str:
    # kubernetes-asyncio takes certificates only as files.
    fd, path = tempfile.mkstemp(prefix="shoal-kube-", suffix=suffix)
    with os.fdopen(fd, "w") as fh:
        fh.write(pem)
    return path


def _apply_tls(conf: kclient.Configuration, http: HTTPClientConfig) -> None:
    tls = http.tls_config
    if tls is None:
        return
    if tls.ca_file or tls.ca_pem:
        conf.ssl_ca_cert = tls.ca_file or _write_private(tls.ca_pem, ".crt")
    if tls.cert_file or tls.cert_pem:
        conf.cert_file = tls.cert_file or _write_private(tls.cert_pem, ".crt")
        conf.key_file = tls.key_file or (_write_private(tls.key_pem, ".key")
                                         if tls.key_pem else None)
    if tls.server_name:
        conf.tls_server_name = tls.server_name
    if tls.insecure_skip_verify:
        conf.verify_ssl = False


async def connect(settings: ClientSettings) -> KubeClient:
    """A client for the settings; KubeConfigError says why when none can be made."""
    # Imported on the first connection, not with this module: the package imports every
    # generated API and model, about 40 MiB of RSS (measured: 54 -> 93 MiB for
    # `shoal run`'s imports), which an agent without Kubernetes discovery should not pay.
    from kubernetes_asyncio import client as kclient
    from kubernetes_asyncio import config as kconfig

    if settings.api_server and settings.kubeconfig_file:
        raise KubeConfigError("api_server and kubeconfig_file are mutually exclusive")
    conf = kclient.Configuration()
    credentials: _Credentials | None = None
    namespace = "default"
    if settings.kubeconfig_file:
        try:
            loader = await kconfig.load_kube_config(
                config_file=settings.kubeconfig_file, client_configuration=conf,
                persist_config=False)
        except (OSError, kconfig.ConfigException, KeyError, TypeError) as e:
            raise KubeConfigError(f"kubeconfig {settings.kubeconfig_file}: {e}") from None
        ctx = loader.current_context or {}
        namespace = ctx.get("context", {}).get("namespace") or "default"
    elif settings.api_server:
        conf.host = settings.api_server.rstrip("/")
        _apply_tls(conf, settings.http)
        credentials = _Credentials(settings.http, None, settings.token_reread)
        # One host, so Prometheus' per-request proxy choice is made once, with its rules.
        proxy = proxy_for(settings.http.proxy(), conf.host)
        if proxy is not None:
            conf.proxy = proxy
            if settings.http.proxy_connect_header:
                conf.proxy_headers = connect_headers(settings.http.proxy_connect_header)
    else:
        ic = settings.in_cluster
        conf.host = ic.server()
        for f in (ic.token_file, ic.ca_file):
            if not f.is_file():
                raise KubeConfigError(f"not in a cluster: {f} does not exist")
        conf.ssl_ca_cert = str(ic.ca_file)
        credentials = _Credentials(None, ic.token_file, settings.token_reread)
        try:
            namespace = ic.namespace_file.read_text().strip() or "default"
        except OSError:
            namespace = "default"
    if credentials is not None:
        # An unreadable token file fails here, with its path. The key must exist before the
        # first request: the client asks the refresh hook only for keys it already has.
        first = credentials.header()
        if first is not None:
            conf.api_key["BearerToken"] = first
        conf.refresh_api_key_hook = credentials.hook
    api = kclient.ApiClient(conf)
    if settings.api_server:
        for name, value in settings.http.headers.items():
            api.set_default_header(name, value)
    return KubeClient(api, namespace, credentials)
