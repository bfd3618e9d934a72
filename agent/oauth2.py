"""OAuth 2.0 client credentials for scraping and remote write: fetch a token, keep it until shortly before it expires.

As Prometheus' ``oauth2`` client config does (golang.org/x/oauth2 clientcredentials):
a POST of ``grant_type=client_credentials`` (plus ``scope`` and the
``endpoint_params``) to ``token_url``, the client authenticating with HTTP
Basic first (id and secret query-escaped first, as Go's ``url.QueryEscape`` does:
a space is ``+``) and, if the server refuses that, with ``client_id`` and
``client_secret`` in the form body (the library's auto-detection); the token is
reused until 10 seconds before ``expires_in`` runs out. ``client_secret_file``
is looked at on every fetch, so a rotated secret is picked up. The secret and
the token never reach logs or errors. The token endpoint is reached through a
session from ``agent/httpclient.py``, like every other request the agent makes, with
the ``oauth2`` block's own TLS and proxy settings.

Every target of a scrape job shares one token, as every target of a Prometheus scrape
pool shares one client: ``acquire`` hands out one :class:`TokenSource` per distinct
settings, counted, and ``release`` closes it after its last user.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from urllib.parse import quote_plus

import aiohttp

from agent.httpclient import new_session, request_options, tls_context
from agent.httpconfig import BasicAuth, OAuth2Config, read_secret_file

EXPIRY_DELTA = 10.0  # seconds before expiry a token is treated as expired (golang.org/x/oauth2)


class TokenError(Exception):
    """The token endpoint could not be reached or refused; the send is retried later."""


class TokenSource:
    def __init__(self, cfg: OAuth2Config, timeout: float = 30.0, check_tls: bool = True) -> None:
        self.cfg = cfg
        self.timeout = timeout
        self._http = cfg.http()
        if check_tls:  # fail now on unreadable TLS files, not at the first fetch
            tls_context(self._http, cfg.token_url)
        self._options = request_options(self._http, cfg.token_url)
        self._session: aiohttp.ClientSession | None = None  # opened inside the running loop
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the session and lock belong to
        self._header = ""
        self._expires = 0.0  # monotonic; 0 = never (no expires_in given)
        self._lock = asyncio.Lock()
        self._basic_refused = False
        self.fetches = 0

    async def authorization(self) -> str:
        """The ``Authorization`` header value, fetching a token when there is none or it is about to expire."""
        if self._header and (not self._expires or time.monotonic() < self._expires):
            return self._header
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a session and a lock cannot cross event loops
            self._loop, self._session, self._lock = loop, None, asyncio.Lock()
        async with self._lock:  # one fetch for all shards waiting
            if self._header and (not self._expires or time.monotonic() < self._expires):
                return self._header
            await self._fetch()
            return self._header

    def _secret(self) -> str:
        if self.cfg.client_secret_file:
            try:
                return read_secret_file(self.cfg.client_secret_file)
            except OSError as exc:
                raise TokenError(f"oauth2: reading client_secret_file: {exc.strerror or exc}") from None
        return self.cfg.client_secret

    async def _fetch(self) -> None:
        c = self.cfg
        form = {"grant_type": "client_credentials", **c.endpoint_params}
        if c.scopes:
            form["scope"] = " ".join(c.scopes)
        secret = self._secret()
        answer = None
        if not self._basic_refused:
            basic = BasicAuth(quote_plus(c.client_id, safe=""), quote_plus(secret, safe="")).header()
            answer = await self._post(form, {"Authorization": basic})
            if answer[0] in (400, 401):
                self._basic_refused = True  # try the credentials in the body, as the Go library does
                answer = None
        if answer is None:
            answer = await self._post({**form, "client_id": c.client_id, "client_secret": secret}, {})
        status, raw = answer
        if status != 200:
            raise TokenError(f"oauth2: token endpoint {c.token_url} answered HTTP {status}")
        try:
            body = json.loads(raw)  # whatever the Content-Type says, as the Go library does
            token = str(body["access_token"])
        except (ValueError, KeyError, TypeError):
            raise TokenError(f"oauth2: token endpoint {c.token_url} answered without an access_token") from None
        kind = str(body.get("token_type") or "Bearer")
        if kind.lower() == "bearer":
            kind = "Bearer"
        expires_in = body.get("expires_in")
        try:
            self._expires = time.monotonic() + float(expires_in) - EXPIRY_DELTA if expires_in else 0.0
        except (TypeError, ValueError):
            self._expires = 0.0
        self._header = f"{kind} {token}"
        self.fetches += 1

    async def _post(self, form: dict[str, str], headers: dict[str, str]) -> tuple[int, bytes]:
        """The status and body of one POST of ``form``; TokenError when no answer came."""
        try:
            if self._session is None or self._session.closed:
                self._session = new_session(self._http, self.cfg.token_url, timeout=self.timeout)
            async with self._session.post(self.cfg.token_url, data=form, headers=headers, **self._options) as resp:
                return resp.status, await resp.read()
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise TokenError(f"oauth2: token endpoint {self.cfg.token_url}: {type(exc).__name__}") from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


_SHARED: dict[str, tuple[TokenSource, int]] = {}


def _key(cfg: OAuth2Config) -> str:
    return repr(dataclasses.astuple(cfg))  # secrets included: a changed secret is another source


def acquire(cfg: OAuth2Config) -> TokenSource:
    """The shared token source for these settings (one token per scrape job, not per target)."""
    key = _key(cfg)
    hit = _SHARED.get(key)
    # TLS files are checked at the first fetch: a bad CA fails the scrape with the reason.
    src = hit[0] if hit is not None else TokenSource(cfg, check_tls=False)
    _SHARED[key] = (src, (hit[1] if hit is not None else 0) + 1)
    return src


async def release(src: TokenSource) -> None:
    """Give back a source from ``acquire``; the last user closes its session."""
    key = _key(src.cfg)
    hit = _SHARED.get(key)
    if hit is None or hit[0] is not src:
        await src.aclose()
        return
    if hit[1] <= 1:
        del _SHARED[key]
        await src.aclose()
    else:
        _SHARED[key] = (src, hit[1] - 1)
