"""HTTP client settings shared by scraping, remote write and OAuth2, and the headers they imply.

The fields mirror Alloy's ``http_client_config`` blocks (basic_auth, authorization,
bearer_token, oauth2, tls_config, proxy_url, no_proxy, proxy_from_environment,
proxy_connect_header, follow_redirects, enable_http2) so a
component can decode its arguments straight into these; ``agent/httpclient.py``
turns them into an aiohttp session. Credentials in files are looked at on every
request, as Prometheus does, so a rotated token is picked up without a reload;
the file is read again only when it changed (see ``read_secret_file``).
"""

from __future__ import annotations

import base64
import errno
import os
import ssl
import tempfile
import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class BasicAuth:
    username: str = ""
    password: str = field(default="", repr=False)
    password_file: str = ""

    def header(self) -> str:
        password = self.password
        if self.password_file:
            password = read_secret_file(self.password_file)
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
            creds = read_secret_file(self.credentials_file)
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
    paths = []
    for pem in (cert_pem, key_pem):
        fd, path = tempfile.mkstemp(prefix="shoal-tls-", suffix=".pem")
        with os.fdopen(fd, "w") as fh:
            fh.write(pem)
        paths.append(path)
    return paths[0], paths[1]


@dataclass(slots=True)
class ProxyConfig:
    """Prometheus' proxy settings (common/config ProxyConfig): where requests go, and what
    the proxy is told when a tunnel is opened. ``agent/httpclient.py`` picks the proxy per URL."""

    proxy_url: str = ""
    no_proxy: str = ""  # comma list of IPs, CIDRs, domain names (Go's httpproxy NoProxy)
    proxy_from_environment: bool = False  # HTTP_PROXY / HTTPS_PROXY / NO_PROXY
    proxy_connect_header: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def validate(self) -> None:
        """Prometheus' exclusions, worded as its config loader words them."""
        if self.proxy_connect_header and not (self.proxy_url or self.proxy_from_environment):
            raise ValueError("if proxy_connect_header is configured, proxy_url or "
                             "proxy_from_environment must also be configured")
        if self.proxy_from_environment and self.proxy_url:
            raise ValueError("if proxy_from_environment is configured, proxy_url must not be configured")
        if self.proxy_from_environment and self.no_proxy:
            raise ValueError("if proxy_from_environment is configured, no_proxy must not be configured")
        if self.no_proxy and not self.proxy_url:
            raise ValueError("if no_proxy is configured, proxy_url must also be configured")


@dataclass(slots=True)
class OAuth2Config:
    """OAuth 2.0 client credentials (Prometheus' ``oauth2``); ``agent/oauth2.py`` fetches tokens."""

    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    client_secret_file: str = ""
    scopes: list[str] = field(default_factory=list)
    token_url: str = ""
    endpoint_params: dict[str, str] = field(default_factory=dict)
    tls_config: TLSConfig | None = None
    proxy_url: str = ""
    no_proxy: str = ""
    proxy_from_environment: bool = False
    proxy_connect_header: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def http(self) -> HTTPClientConfig:
        """The settings the token endpoint is reached with."""
        return HTTPClientConfig(tls_config=self.tls_config, proxy_url=self.proxy_url,
                                no_proxy=self.no_proxy,
                                proxy_from_environment=self.proxy_from_environment,
                                proxy_connect_header=self.proxy_connect_header)


@dataclass(slots=True)
class HTTPClientConfig:
    basic_auth: BasicAuth | None = None
    authorization: Authorization | None = None
    bearer_token: str = field(default="", repr=False)
    bearer_token_file: str = ""
    tls_config: TLSConfig | None = None
    proxy_url: str = ""
    no_proxy: str = ""
    proxy_from_environment: bool = False
    proxy_connect_header: dict[str, list[str]] = field(default_factory=dict, repr=False)
    oauth2: OAuth2Config | None = None
    follow_redirects: bool = True
    enable_http2: bool = True
    headers: dict[str, str] = field(default_factory=dict)

    def proxy(self) -> ProxyConfig:
        return ProxyConfig(self.proxy_url, self.no_proxy, self.proxy_from_environment,
                           self.proxy_connect_header)

    def auth_header(self) -> str | None:
        """The Authorization header value for the next request, or None."""
        if self.basic_auth is not None:
            return self.basic_auth.header()
        if self.authorization is not None:
            return self.authorization.header()
        if self.bearer_token_file:
            return "Bearer " + read_secret_file(self.bearer_token_file)
        if self.bearer_token:
            return "Bearer " + self.bearer_token
        return None

    def request_headers(self) -> dict[str, str]:
        out = dict(self.headers)
        auth = self.auth_header()
        if auth is not None:
            out["Authorization"] = auth
        return out


# A file modified less than this long ago is read again even if its stat looks
# unchanged: a filesystem's modification time only moves every few milliseconds,
# so two writes of a same-length token inside one tick would otherwise look alike
# (git's "racy clean" rule).
_RACY_SECONDS = 2.0
_FILES: dict[str, tuple[tuple[int, int, int, int], str]] = {}


def read_secret_file(path: str) -> str:
    """The stripped content of a credentials file, read again only when the file changed.

    A scrape or remote-write request looks at its token file every time, as
    Prometheus does; checking costs ~2.7 us against ~17 us for ``Path.read_text``
    (timeit, tmpfs), and a token stays the same for hours. A file replaced by
    rename (Kubernetes' projected tokens) changes inode; one rewritten in place
    changes size or mtime. Raises OSError when the file cannot be read or is not
    UTF-8 text; the caller reports it as a failed request.
    """
    st = os.stat(path)
    sig = (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)
    hit = _FILES.get(path)
    if hit is not None and hit[0] == sig and time.time() - st.st_mtime_ns / 1e9 > _RACY_SECONDS:
        return hit[1]
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise OSError(errno.EINVAL, "not UTF-8 text", path) from None
    if len(_FILES) > 1024:
        _FILES.clear()
    _FILES[path] = (sig, text)
    return text
