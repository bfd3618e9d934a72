"""One target's HTTP side: a reused connection, Prometheus' request headers, a bounded body.

The client is aiohttp, not httpx: a scrape is one small GET on a kept-alive
connection, repeated every interval for every target, so the client's fixed
cost per request is paid hundreds of times a second. Measured on loopback
(nginx, 144 kB gzipped exposition, one core): httpx ~1,200 us of CPU per
request, aiohttp ~450 us, of which ~260 us is gzip decoding. A plain
``http://`` target without a proxy is fetched by the lean client of
``rawhttp`` instead (~210 -> ~90 us per request with the load test's body,
inflate included); TLS, proxies, credentials in the URL, a redirect to
another host and a failed dial stay with aiohttp, which does them well.

The body is read compressed and inflated here with zlib-ng (about 5x faster
than zlib on these bodies: ~260 -> ~50 us), chunk by chunk with a cap on the
output, so ``body_size_limit`` is enforced on the decompressed bytes as they
arrive (a gzip bomb or an endless body stops at the limit), and the whole
request runs under the scrape timeout, so a target that trickles bytes
forever fails the scrape instead of holding it.
"""

from __future__ import annotations

import asyncio
import errno
import os
from typing import Any

import aiohttp
import yarl
from zlib_ng import zlib_ng

from agent import oauth2, rawhttp
from agent.httpclient import MAX_REDIRECTS, new_session, request_options
from agent.scrape.config import ScrapeConfig


class FetchError(Exception):
    """The request failed: refused, timed out, non-200, or body over the limit."""

    def __init__(self, message: str, body_limit: bool = False) -> None:
        super().__init__(message)
        self.body_limit = body_limit


class Scraper:
    __slots__ = ("url", "cfg", "timeout", "client", "tokens", "raw", "_url", "_accept", "_base_headers",
                 "_kw", "_request_line")

    def __init__(self, url: str, cfg: ScrapeConfig, timeout: float) -> None:
        self.url = url
        self.cfg = cfg
        self.timeout = timeout
        self.client: aiohttp.ClientSession | None = None
        # Parsed once; target_url already percent-encodes, so no re-quoting per request.
        self._url = yarl.URL(url, encoded=True)
        self._accept = cfg.accept_header()
        self._base_headers = {
            "Accept": self._accept,
            "Accept-Encoding": "gzip" if cfg.enable_compression else "identity",
            "User-Agent": cfg.user_agent,
            "X-Prometheus-Scrape-Timeout-Seconds": _fmt_seconds(timeout),
        }
        self._kw = request_options(cfg.http, url)
        # One token for every target of the job (oauth2.acquire), fetched at the first scrape.
        self.tokens = oauth2.acquire(cfg.http.oauth2) if cfg.http.oauth2 is not None else None
        # Plain http, no proxy, no credentials in the URL: the lean client (rawhttp); else aiohttp.
        self.raw: rawhttp.Connection | None = None
        self._request_line = b""
        u = self._url
        if u.scheme == "http" and "proxy" not in self._kw and not u.raw_user and u.raw_host:
            host = u.raw_host
            port = u.port or 80
            shown = f"[{host}]" if ":" in host else host
            if u.explicit_port is not None:
                shown = f"{shown}:{port}"
            self.raw = rawhttp.Connection(host, port)
            self._request_line = f"GET {u.raw_path_qs} HTTP/1.1\r\nHost: {shown}\r\n".encode()

    def _client(self) -> aiohttp.ClientSession:
        if self.client is None:
            # One connection: a target is scraped by one loop, one request at a time.
            self.client = new_session(self.cfg.http, self.url, timeout=None, connections=1,  # fetch() times it
                                      decompress=False, skip_auto_headers=("Accept-Encoding",))
        return self.client

    async def fetch(self) -> tuple[bytes, str]:
        """The decoded body and its Content-Type; raises FetchError with the reason."""
        headers = dict(self._base_headers)
        try:
            headers.update(self.cfg.http.request_headers())
        except OSError as exc:
            raise FetchError(f"unable to read credentials: {exc.strerror or exc}") from None
        try:
            async with asyncio.timeout(self.timeout):
                if self.tokens is not None:
                    headers["Authorization"] = await self.tokens.authorization()
                if self.raw is not None:
                    got = await self._fetch_raw(headers)
                    if got is not None:
                        return got
                async with self._client().get(self._url, headers=headers, **self._kw) as resp:  # type: ignore[arg-type]
                    body = _Body(self.cfg.body_size_limit, False)
                    body.check(resp.status, resp.reason or "", resp.headers.get("Content-Encoding", ""))
                    async for chunk in resp.content.iter_any():
                        body.feed(chunk)
                    return body.finish(), resp.headers.get("Content-Type", "")
        except oauth2.TokenError as exc:
            raise FetchError(f'Get "{self.url}": {exc}') from None
        except TimeoutError:
            raise FetchError(
                f'Get "{self.url}": context deadline exceeded (timeout {_fmt_seconds(self.timeout)}s)'
            ) from None
        except aiohttp.TooManyRedirects:
            raise FetchError(f'Get "{self.url}": stopped after {MAX_REDIRECTS} redirects') from None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise FetchError(f'Get "{self.url}": tls: {exc.certificate_error}') from None
        except aiohttp.ClientConnectorSSLError as exc:
            raise FetchError(f'Get "{self.url}": tls: {exc.os_error}') from None
        except aiohttp.ClientConnectorError as exc:
            raise FetchError(f'Get "{self.url}": {_dial_error(exc)}') from None
        except rawhttp.ProtocolError as exc:
            raise FetchError(f'Get "{self.url}": {exc}') from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            reason = str(exc) or type(exc).__name__
            raise FetchError(f'Get "{self.url}": {reason}') from None

    async def _fetch_raw(self, headers: dict[str, str]) -> tuple[bytes, str] | None:
        """The answer through the lean client; None: ask aiohttp (a failed lookup, a redirect elsewhere).

        A dial the target's host refuses or cannot route is reported here in Go's words, as
        aiohttp's would be, so a down target costs one attempt per scrape; any other failed
        dial (a name that does not resolve) goes to aiohttp for its error. Redirects
        within the target's host and port are followed here, as Go does (at most
        MAX_REDIRECTS, headers kept); one to another host, port or scheme starts over in aiohttp.
        """
        assert self.raw is not None
        out = []
        for k, v in headers.items():
            if "\r" in v or "\n" in v or "\r" in k or "\n" in k:
                raise ValueError("Newline or carriage return detected in headers")
            out.append(f"{k}: {v}\r\n".encode())
        out.append(b"\r\n")
        rest = b"".join(out)
        line = self._request_line
        url = self._url
        for hop in range(MAX_REDIRECTS + 1):
            body = _Body(self.cfg.body_size_limit, self.cfg.http.follow_redirects)
            try:
                resp = await self.raw.get(line + rest, body)
            except rawhttp.ConnectError as exc:
                if exc.os_error.errno in _DIAL_ERRNOS:
                    host, port = self.raw.host, self.raw.port
                    raise FetchError(f'Get "{self.url}": {_dial_words(host, port, exc.os_error)}') from None
                return None
            if not body.redirect:
                return body.finish(), resp.headers.get("content-type", "")
            if hop == MAX_REDIRECTS:
                raise FetchError(f'Get "{self.url}": stopped after {MAX_REDIRECTS} redirects')
            nxt = url.join(yarl.URL(resp.headers["location"]))
            if nxt.scheme != "http" or nxt.raw_host != url.raw_host or nxt.port != url.port:
                return None
            url = nxt
            line = self._request_line.replace(self._url.raw_path_qs.encode(), nxt.raw_path_qs.encode(), 1)
        return None

    async def close(self) -> None:
        if self.raw is not None:
            self.raw.close()
        if self.tokens is not None:
            tokens, self.tokens = self.tokens, None
            await oauth2.release(tokens)
        if self.client is not None:
            client, self.client = self.client, None
            await client.close()


class _Body:
    """A scrape's answer as it arrives: status checked, inflated if gzip, capped at ``limit`` decoded bytes.

    Shared by both clients, so the status error, the gzip errors and ``body_size_limit``
    read the same whichever client fetched the body.
    """

    __slots__ = ("limit", "follow", "redirect", "n", "chunks", "d")

    def __init__(self, limit: int, follow_redirects: bool) -> None:
        self.limit = limit  # 0: none
        self.follow = follow_redirects
        self.redirect = False
        self.n = 0
        self.chunks: list[bytes] = []
        self.d: Any = None

    def head(self, resp: rawhttp.Response) -> bool:
        """For rawhttp: whether to read the body; a redirect to follow is read and dropped."""
        if self.follow and resp.status in (301, 302, 303, 307, 308) and "location" in resp.headers:
            self.redirect = True
            return True
        self.check(resp.status, resp.reason, resp.headers.get("content-encoding", ""))
        return True

    def check(self, status: int, reason: str, encoding: str) -> None:
        if status != 200:
            raise FetchError(f"server returned HTTP status {status} {reason}".rstrip())
        if encoding.lower() in ("gzip", "x-gzip"):
            self.d = zlib_ng.decompressobj(31)

    def feed(self, chunk: bytes) -> None:
        if self.redirect:
            return
        limit = self.limit
        d = self.d
        if d is None:
            self.n += len(chunk)
            if limit and self.n >= limit:
                raise FetchError("body size limit exceeded", body_limit=True)
            self.chunks.append(chunk)
            return
        try:
            while chunk and not d.eof:
                # Cap each step's output: a few kB of gzip can inflate to gigabytes.
                out = d.decompress(chunk, (limit - self.n + 1) if limit else 0)
                self.n += len(out)
                if limit and self.n >= limit:
                    raise FetchError("body size limit exceeded", body_limit=True)
                self.chunks.append(out)
                chunk = d.unconsumed_tail
        except zlib_ng.error as exc:
            raise FetchError(f"error decoding response body: {exc}") from None

    def finish(self) -> bytes:
        d = self.d
        if d is not None:
            try:
                tail = d.flush()
            except zlib_ng.error as exc:
                raise FetchError(f"error decoding response body: {exc}") from None
            self.n += len(tail)
            if self.limit and self.n >= self.limit:
                raise FetchError("body size limit exceeded", body_limit=True)
            self.chunks.append(tail)
            if not d.eof:
                raise FetchError("error decoding response body: unexpected end of gzip stream")
        return b"".join(self.chunks)


# Dial failures that name the address, not the name: answered by the lean client itself.
_DIAL_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ECONNRESET, errno.EHOSTUNREACH,
                          errno.ENETUNREACH, errno.ETIMEDOUT, errno.EADDRNOTAVAIL})


def _dial_error(exc: aiohttp.ClientConnectorError) -> str:
    return _dial_words(exc.host, exc.port, exc.os_error, str(exc))


def _dial_words(host: str, port: int | None, os_err: OSError | None, fallback: str = "") -> str:
    """Go's wording for a failed dial: ``dial tcp HOST:PORT: connect: connection refused``."""
    if os_err is not None and os_err.errno:
        reason = os.strerror(os_err.errno).lower()
    else:
        reason = str(os_err or fallback)
    return f"dial tcp {host}:{port}: connect: {reason}"


def _fmt_seconds(s: float) -> str:
    """Go's FormatFloat(s, 'f', -1, 64) for the values we use."""
    text = repr(float(s))
    return text[:-2] if text.endswith(".0") else text
