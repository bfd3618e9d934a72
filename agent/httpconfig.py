"""HTTP client settings shared by scraping and remote write, and the client they build.

The fields mirror Alloy's ``http_client_config`` blocks (basic_auth, authorization,
bearer_token, tls_config, proxy_url, follow_redirects, enable_http2) so a
component can decode its arguments straight into these. Credentials read from
files are re-read on every request, as Prometheus does, so a rotated token is
picked up without a reload.
"""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import httpx


@dataclass(slots=True)
class BasicAuth:
    username: str = ""
    password: str = field(default="", repr=False)
    password_file: str = ""

    def header(self) -> str:
        password = self.password
        if self.password_file:
            password = Path(self.password_file).read_text().strip()
        token = base64.b64encode(f"{self.username}:{password}".encode()).decode()
        return f"Basic {token}"


@dataclass(slots=True)
class Authorization:
    type: str = "Bearer"
    credentials: str = field(default="", repr=False)
    credentials_file: str = ""

    def header(self) -> str:
        creds = self.credentials
        if self.credentials_file:
            creds = Path(self.credentials_file).read_text().strip()
        return f"{self.type or 'Bearer'} {creds}"


@dataclass(slots=True)
class TLSConfig:
    ca_pem: str = ""
    ca_file: str = ""
    cert_pem: str = ""
    cert_file: str = ""
    key_pem: str = field(default="", repr=False)
    key_file: str = ""
    server_name: str = ""
    insecure_skip_verify: bool = False
    min_version: str = ""

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if self.ca_file or self.ca_pem:
            ctx = ssl.create_default_context(
                cafile=self.ca_file or None, cadata=self.ca_pem or None
            )
        if self.cert_file or self.cert_pem:
            cert, key = self.cert_file, self.key_file
            if self.cert_pem or self.key_pem:
                cert, key = _pem_to_files(self.cert_pem, self.key_pem)
            ctx.load_cert_chain(cert, key or None)
        if self.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.min_version:
            ctx.minimum_version = {
                "TLS10": ssl.TLSVersion.TLSv1,
                "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2,
                "TLS13": ssl.TLSVersion.TLSv1_3,
            }[self.min_version.upper()]
        return ctx


def _pem_to_files(cert_pem: str, key_pem: str) -> tuple[str, str]:
    """ssl only loads client certificates from files, so inline PEM goes to a private temp file."""
    import os
    import tempfile

    paths = []
    for pem in (cert_pem, key_pem):
        fd, path = tempfile.mkstemp(prefix="shoal-tls-", suffix=".pem")
        with os.fdopen(fd, "w") as fh:
            fh.write(pem)
        paths.append(path)
    return paths[0], paths[1]


@dataclass(slots=True)
class HTTPClientConfig:
    basic_auth: BasicAuth | None = None
    authorization: Authorization | None = None
    bearer_token: str = field(default="", repr=False)
    bearer_token_file: str = ""
    tls_config: TLSConfig | None = None
    proxy_url: str = ""
    follow_redirects: bool = True
    enable_http2: bool = True
    headers: dict[str, str] = field(default_factory=dict)

    def auth_header(self) -> str | None:
        """The Authorization header value for the next request, or None."""
        if self.basic_auth is not None:
            return self.basic_auth.header()
        if self.authorization is not None:
            return self.authorization.header()
        if self.bearer_token_file:
            return "Bearer " + Path(self.bearer_token_file).read_text().strip()
        if self.bearer_token:
            return "Bearer " + self.bearer_token
        return None

    def request_headers(self) -> dict[str, str]:
        out = dict(self.headers)
        auth = self.auth_header()
        if auth is not None:
            out["Authorization"] = auth
        return out

    def build_async_client(self, timeout: float, **kwargs: object) -> httpx.AsyncClient:
        verify: ssl.SSLContext | bool = shared_ssl_context(self.tls_config)
        return httpx.AsyncClient(
            timeout=timeout,
            verify=verify,
            proxy=self.proxy_url or None,
            follow_redirects=self.follow_redirects,
            trust_env=False,
            **kwargs,  # type: ignore[arg-type]
        )


_SSL_CONTEXTS: dict[tuple, ssl.SSLContext] = {}


def shared_ssl_context(tls: TLSConfig | None) -> ssl.SSLContext:
    """One SSLContext per distinct TLS settings (and file versions), shared by all clients.

    Building a context loads the CA bundle (tens of ms, on the event loop); a
    scrape job with a thousand targets must not pay that a thousand times.
    Files' modification times are part of the key, so rotated files are re-read.
    """
    import dataclasses
    import os

    if tls is None:
        key: tuple = ("default",)
    else:
        files = (tls.ca_file, tls.cert_file, tls.key_file)
        mtimes = tuple(os.stat(f).st_mtime_ns if f and os.path.exists(f) else 0 for f in files)
        key = (dataclasses.astuple(tls), mtimes)
    ctx = _SSL_CONTEXTS.get(key)
    if ctx is None:
        ctx = ssl.create_default_context() if tls is None else tls.ssl_context()
        if len(_SSL_CONTEXTS) > 256:
            _SSL_CONTEXTS.clear()
        _SSL_CONTEXTS[key] = ctx
    return ctx
