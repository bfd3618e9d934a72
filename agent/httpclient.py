"""The one place an aiohttp session is built from ``HTTPClientConfig``.

Scraping, remote write, OAuth2 token fetches and (next) the Kubernetes client
all speak HTTP through aiohttp with the same settings block, so TLS, proxies,
redirects, timeouts and cookies are decided here once instead of drifting apart
in each caller. What a caller still chooses is what differs in its use: how long
a request may take, how many connections a session may hold, and whether the
body is inflated by aiohttp or by the caller (the scraper inflates gzip itself
to cap the decoded size). Per request, a caller passes ``request_options``
and adds ``cfg.request_headers()``: the Authorization header is computed per
request because its files may rotate (an OSError there is the caller's to
report as a failed request).

aiohttp speaks HTTP/1.1 only, so ``enable_http2`` is accepted and has no effect
(Prometheus negotiates HTTP/2 only over TLS, by ALPN); here each target and each
remote-write shard keeps its own HTTP/1.1 connection alive instead.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
from collections.abc import Iterable
from typing import Any

import aiohttp

from agent.httpconfig import HTTPClientConfig, TLSConfig
from agent.httpproxy import proxy_for

# Go's http.Client stops after 10 redirects; so does Prometheus.
MAX_REDIRECTS = 10


def new_session(
    cfg: HTTPClientConfig,
    url: str,
    *,
    timeout: float | None,
    connections: int = 0,
    decompress: bool = True,
    skip_auto_headers: Iterable[str] = (),
) -> aiohttp.ClientSession:
    """A session for requests to ``url``'s scheme under ``cfg``; call inside the running loop.

    ``timeout`` bounds each whole request (None: the caller bounds it, as the
    scraper does with the scrape timeout); ``connections`` caps the pool (0: no
    cap). Cookies are never kept: Go's client has no cookie jar unless given
    one, and a target or backend must not be able to pin state on us. aiohttp's
    own reading of the environment's proxy settings is off: ``request_options``
    decides per URL with Prometheus' rules (``agent/httpproxy.py``).
    """
    ctx = tls_context(cfg, url)
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, ssl=ctx if ctx is not None else True),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=timeout),
        auto_decompress=decompress,
        skip_auto_headers=tuple(skip_auto_headers),
        trust_env=False,
    )


def request_options(cfg: HTTPClientConfig, url: str) -> dict[str, Any]:
    """Keyword arguments for every request of a session (aiohttp has no session-wide setting for them)."""
    options: dict[str, Any] = {"allow_redirects": cfg.follow_redirects, "max_redirects": MAX_REDIRECTS}
    proxy = proxy_for(cfg.proxy(), url)
    if proxy:
        options["proxy"] = proxy
        if cfg.proxy_connect_header and _is_https(url):
            # Go sends ProxyConnectHeader on the CONNECT of a tunnel only, never to a plain-HTTP target.
            options["proxy_headers"] = connect_headers(cfg.proxy_connect_header)
    tls = cfg.tls_config
    if tls is not None and tls.server_name and _is_https(url):
        options["server_hostname"] = tls.server_name
    return options


def connect_headers(headers: dict[str, list[str]]) -> list[tuple[str, str]]:
    """A CONNECT's extra headers, one line per value as Go's http.Header writes them."""
    return [(k, v) for k, vs in headers.items() for v in vs]


def tls_context(cfg: HTTPClientConfig, url: str) -> ssl.SSLContext | None:
    """The TLS context for an ``https`` URL (None for plain HTTP, which needs none).

    Raises OSError / ssl.SSLError when a CA, certificate or key cannot be
    loaded, so a caller that wants to fail at start rather than at the first
    request can call this early.
    """
    return shared_ssl_context(cfg.tls_config) if _is_https(url) else None


def _is_https(url: str) -> bool:
    return url[:6].lower() == "https:"


_SSL_CONTEXTS: dict[tuple, ssl.SSLContext] = {}


def shared_ssl_context(tls: TLSConfig | None) -> ssl.SSLContext:
    """One SSLContext per distinct TLS settings (and file versions), shared by all sessions.

    Building a context loads the CA bundle (tens of ms, on the event loop); a
    scrape job with a thousand targets must not pay that a thousand times.
    Files' modification times are part of the key, so rotated files are re-read.
    """
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
