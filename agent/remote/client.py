"""One POST of one encoded batch, and what its answer means for the sender.

The client only classifies: ``ok``; ``retry`` (5xx, 429 when allowed, network
errors and timeouts), with the server's Retry-After when it gave one; ``drop``
(any other answer: the backend has rejected the data for good and sending it
again would only repeat the rejection); or ``fallback``: a 2.0 request the
receiver does not speak (415, or a 2xx without the
``X-Prometheus-Remote-Write-Samples-Written`` header the 2.0 spec makes
mandatory: Prometheus before 2.54 answers 204 to a 2.0 body and writes
nothing, because it decodes it as a 1.0 message whose fields it does not
know). Retrying in place and waiting is the shard's job.

The POST goes through aiohttp rather than httpx: measured against a local
server answering 204, httpx (with httpcore's anyio machinery) cost ~1,170 us
of CPU per request and aiohttp ~300 us (a bare asyncio stream ~75 us); at
2,000 samples per request that is ~0.6 against ~0.15 us per sample, a large
share of the agent's budget. The session comes from ``agent/httpclient.py`` on
the first send, inside the running loop, with its own connection pool (no
limit: at most one request per shard is in flight); the TLS settings are loaded
when the client is built, so an unreadable CA or key fails the start.

A 429 is usually a rate limit and worth retrying, but a backend's series
(cardinality) limit also answers 429 and will refuse the same series however
long we wait; its body says so, and such a 429 is dropped as
``http_429_series_limit`` instead of blocking the shard forever. Likewise a
500 whose body says "native histograms are disabled" (Prometheus started
without ``--enable-feature=native-histograms`` answers every request holding
a histogram so) is dropped as ``http_500_native_histograms_disabled``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import yarl

import agent
from agent import rawhttp
from agent.httpclient import new_session, request_options, tls_context
from agent.httpconfig import HTTPClientConfig, OAuth2Config
from agent.oauth2 import TokenError, TokenSource
from agent.remote.backoff import parse_retry_after
from agent.remote.codec_v2 import V1, V2

USER_AGENT = f"Shoal/{agent.__version__}"
_PROTOCOL_HEADERS = {
    V1: {
        "Content-Encoding": "snappy",
        "Content-Type": "application/x-protobuf",
        "X-Prometheus-Remote-Write-Version": "0.1.0",
        "User-Agent": USER_AGENT,
    },
    V2: {
        "Content-Encoding": "snappy",
        "Content-Type": f"application/x-protobuf;proto={V2}",
        "X-Prometheus-Remote-Write-Version": "2.0.0",
        "User-Agent": USER_AGENT,
    },
}
WRITTEN = (
    "X-Prometheus-Remote-Write-Samples-Written",
    "X-Prometheus-Remote-Write-Histograms-Written",
    "X-Prometheus-Remote-Write-Exemplars-Written",
)
# Body phrases of a 429 that waiting will not cure: a series / cardinality limit
# (Mimir, Cortex and Thanos phrase it "per-user series limit", "max series", ...).
_LIMIT_PHRASES = ("series limit", "max series", "max_series", "max-series", "maxseries", "too many series",
                  "active series", "cardinality", "series_limit")


def is_series_limit(body: str) -> bool:
    low = body.lower()
    return any(p in low for p in _LIMIT_PHRASES)


def redact_url(url: str) -> str:
    """The URL without user:password, for logs, errors and the API."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


@dataclass(slots=True)
class SendResult:
    outcome: str  # "ok" | "retry" | "drop"
    status: int = 0  # HTTP status, 0 when no answer came
    reason: str = ""  # for the drop counter's label and the status page
    detail: str = ""
    retry_after: float | None = None
    duration: float = 0.0
    written: tuple[int | None, int | None, int | None] = (None, None, None)  # samples, histograms, exemplars


class WriteClient:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        headers: dict[str, str] | None = None,
        http: HTTPClientConfig | None = None,
        retry_on_http_429: bool = True,
        oauth2: OAuth2Config | None = None,
    ) -> None:
        self.url = url
        self.safe_url = redact_url(url)
        self.timeout = timeout
        self.headers = dict(headers or {})
        self.http = http or HTTPClientConfig()
        self.retry_on_http_429 = retry_on_http_429
        self._session: aiohttp.ClientSession | None = None
        tls_context(self.http, url)  # fail now on unreadable TLS files, not at the first send
        self._options = request_options(self.http, url)
        self.tokens = TokenSource(oauth2, timeout) if oauth2 is not None else None
        # Plain http, no proxy, no credentials in the URL: POSTs through rawhttp's lean client on
        # a pool of kept connections (one per shard in flight); else, and for a failed dial or a
        # redirect, aiohttp.
        self._raw_idle: list[rawhttp.Connection] | None = None
        self._raw_head = b""
        u = yarl.URL(url)
        if u.scheme == "http" and "proxy" not in self._options and not u.raw_user and u.raw_host:
            host = u.raw_host
            shown = f"[{host}]" if ":" in host else host
            if u.explicit_port is not None:
                shown = f"{shown}:{u.port}"
            self._raw_idle = []
            self._raw_addr = (host, u.port or 80)
            self._raw_head = f"POST {u.raw_path_qs} HTTP/1.1\r\nHost: {shown}\r\n".encode()

    def _open(self) -> aiohttp.ClientSession:
        s = self._session
        if s is None or s.closed:
            s = self._session = new_session(self.http, self.url, timeout=self.timeout,
                                            skip_auto_headers=("User-Agent",))
        return s

    async def send(self, body: bytes, attempt: int = 0, proto: str = V1) -> SendResult:
        t0 = time.monotonic()
        try:
            auth = self.http.request_headers()
        except OSError as exc:  # a credentials file missing or unreadable: retried, it may come back
            return SendResult("retry", 0, "credentials", f"unable to read credentials: {exc.strerror or exc}",
                              duration=time.monotonic() - t0)
        headers = {**self.headers, **auth, **_PROTOCOL_HEADERS[proto]}
        if attempt > 0:
            headers["Retry-Attempt"] = str(attempt)
        if self.tokens is not None:
            try:
                headers["Authorization"] = await self.tokens.authorization()
            except TokenError as exc:
                return SendResult("retry", 0, "oauth2", str(exc), duration=time.monotonic() - t0)
        try:
            got = await self._post_raw(body, headers) if self._raw_idle is not None else None
            if got is not None:
                code, reason, rh, raw = got
            else:
                async with self._open().post(self.url, data=body, headers=headers, **self._options) as resp:
                    code, reason, rh = resp.status, resp.reason or "", resp.headers
                    raw = b"" if 200 <= code < 300 else await resp.read()
            if 200 <= code < 300:
                took = time.monotonic() - t0
                written = tuple(_int_header(rh.get(h)) for h in WRITTEN)
                if proto == V2 and written == (None, None, None):
                    return SendResult("fallback", code, "rw2_unsupported",
                                      f"HTTP {code} without X-Prometheus-Remote-Write-Samples-Written: "
                                      "the receiver does not speak Remote-Write 2.0", duration=took)
                return SendResult("ok", code, duration=took, written=written)  # type: ignore[arg-type]
            retry_after = parse_retry_after(rh.get("Retry-After"))
        except TimeoutError as exc:
            return SendResult("retry", 0, "timeout", f"{type(exc).__name__} after {self.timeout}s",
                              duration=time.monotonic() - t0)
        except (aiohttp.ClientError, OSError, rawhttp.ProtocolError) as exc:
            return SendResult("retry", 0, "network", _describe(exc, self.url, self.safe_url),
                              duration=time.monotonic() - t0)
        except ValueError as exc:  # pragma: no cover - protocol oddities; retrying is the safe answer
            return SendResult("retry", 0, "http", _describe(exc, self.url, self.safe_url),
                              duration=time.monotonic() - t0)
        took = time.monotonic() - t0
        full = raw[:4096].decode("utf-8", "replace")
        text = full[:256].strip()
        detail = f"server returned HTTP status {code} {reason}: {text}"
        if code == 415 and proto == V2:
            return SendResult("fallback", code, "http_415", detail, duration=took)
        if code == 429:
            if is_series_limit(full):
                return SendResult("drop", code, "http_429_series_limit", detail, duration=took)
            if self.retry_on_http_429:
                return SendResult("retry", code, "http_429", detail, retry_after, took)
            return SendResult("drop", code, "http_429", detail, duration=took)
        if code >= 500:
            if "native histograms are disabled" in full.lower():
                return SendResult("drop", code, f"http_{code}_native_histograms_disabled", detail, duration=took)
            return SendResult("retry", code, f"http_{code}", detail, retry_after, took)
        return SendResult("drop", code, f"http_{code}", detail, duration=took)

    async def _post_raw(self, body: bytes, headers: dict[str, str]) -> tuple[int, str, _Headers, bytes] | None:
        """One POST through rawhttp: (status, reason, headers, body); None: ask aiohttp.

        aiohttp's fixed cost per request was ~5 % of the agent's CPU under the heavy load test.
        A failed dial goes to aiohttp so that its error reads as before; a redirect too.
        """
        assert self._raw_idle is not None
        named: dict[str, tuple[str, str]] = {}
        for k, v in headers.items():
            if "\r" in v or "\n" in v or "\r" in k or "\n" in k:
                raise ValueError("Newline or carriage return detected in headers")
            named[k.lower()] = (k, v)  # the later of two spellings of a name wins
        lines = [self._raw_head]
        lines += [f"{k}: {v}\r\n".encode() for k, v in named.values()]
        lines.append(b"Content-Length: %d\r\n\r\n" % len(body))
        lines.append(body)
        conn = self._raw_idle.pop() if self._raw_idle else rawhttp.Connection(*self._raw_addr)
        answer = _Answer()
        try:
            async with asyncio.timeout(self.timeout):
                resp = await conn.get(b"".join(lines), answer)
        except rawhttp.ConnectError:
            return None
        if conn.open:
            self._raw_idle.append(conn)
        if 300 <= resp.status < 400 and self._options.get("allow_redirects", True):
            return None
        return resp.status, resp.reason, _Headers(resp.headers), answer.body()

    async def aclose(self) -> None:
        for conn in self._raw_idle or ():
            conn.close()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self.tokens is not None:
            await self.tokens.aclose()


class _Headers(dict):
    """rawhttp's headers (names lower-cased) read with the names as the protocol spells them."""

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(name.lower(), default)


class _Answer:
    """A response body to rawhttp, kept up to 4 kB (all the classification reads)."""

    __slots__ = ("chunks", "n")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.n = 0

    def head(self, resp: rawhttp.Response) -> bool:
        return True

    def feed(self, data: bytes) -> None:
        if self.n < 4096:
            self.chunks.append(data)
        self.n += len(data)

    def body(self) -> bytes:
        return b"".join(self.chunks)


def _int_header(v: str | None) -> int | None:
    if v is None:
        return None
    try:
        return int(v.strip())
    except ValueError:
        return None


def _describe(exc: Exception, url: str, safe: str) -> str:
    return f"{type(exc).__name__}: {str(exc).replace(url, safe)}"[:300]
