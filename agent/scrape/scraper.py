"""One target's HTTP side: a reused client, Prometheus' request headers, a bounded body.

The body is streamed so ``body_size_limit`` is enforced on the decompressed
bytes as they arrive (a gzip bomb or an endless body stops at the limit), and
the whole request runs under the scrape timeout, so a target that trickles
bytes forever fails the scrape instead of holding it.
"""

from __future__ import annotations

import asyncio

import httpx

from agent.scrape.config import ScrapeConfig


class FetchError(Exception):
    """The request failed: refused, timed out, non-200, or body over the limit."""

    def __init__(self, message: str, body_limit: bool = False) -> None:
        super().__init__(message)
        self.body_limit = body_limit


class Scraper:
    __slots__ = ("url", "cfg", "timeout", "client", "_accept", "_base_headers")

    def __init__(self, url: str, cfg: ScrapeConfig, timeout: float) -> None:
        self.url = url
        self.cfg = cfg
        self.timeout = timeout
        self.client: httpx.AsyncClient | None = None
        self._accept = cfg.accept_header()
        self._base_headers = {
            "Accept": self._accept,
            "Accept-Encoding": "gzip" if cfg.enable_compression else "identity",
            "User-Agent": cfg.user_agent,
            "X-Prometheus-Scrape-Timeout-Seconds": _fmt_seconds(timeout),
        }

    def _client(self) -> httpx.AsyncClient:
        if self.client is None:
            limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
            self.client = self.cfg.http.build_async_client(timeout=self.timeout, limits=limits)
        return self.client

    async def fetch(self) -> tuple[bytes, str]:
        """The decoded body and its Content-Type; raises FetchError with the reason."""
        headers = dict(self._base_headers)
        try:
            headers.update(self.cfg.http.request_headers())
        except OSError as exc:
            raise FetchError(f"unable to read credentials: {exc.strerror or exc}") from None
        limit = self.cfg.body_size_limit
        try:
            async with asyncio.timeout(self.timeout):
                async with self._client().stream("GET", self.url, headers=headers) as resp:
                    if resp.status_code != 200:
                        raise FetchError(
                            f"server returned HTTP status {resp.status_code} {resp.reason_phrase}"
                        )
                    chunks: list[bytes] = []
                    n = 0
                    async for chunk in resp.aiter_bytes():
                        n += len(chunk)
                        if limit and n >= limit:
                            raise FetchError("body size limit exceeded", body_limit=True)
                        chunks.append(chunk)
                    return b"".join(chunks), resp.headers.get("content-type", "")
        except TimeoutError:
            raise FetchError(
                f'Get "{self.url}": context deadline exceeded (timeout {_fmt_seconds(self.timeout)}s)'
            ) from None
        except httpx.DecodingError as exc:
            raise FetchError(f"error decoding response body: {exc}") from None
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise FetchError(f'Get "{self.url}": {reason}') from None

    async def close(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            await client.aclose()


def _fmt_seconds(s: float) -> str:
    """Go's FormatFloat(s, 'f', -1, 64) for the values we use."""
    text = repr(float(s))
    return text[:-2] if text.endswith(".0") else text
