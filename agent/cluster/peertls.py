"""TLS between peers (Alloy's ``--cluster.enable-tls`` and ``--cluster.tls-*`` flags).

What goes between agents by TCP is push-pull (the whole member table, and every
join), carried as an HTTP POST to the peer's HTTP port. With TLS on, each agent
posts over HTTPS, trusting only the given CA, presenting its own certificate,
and checking the peer's certificate against ``server_name`` (or the address
dialled when none is given); its HTTP server serves TLS with the same
certificate, asks every client for a certificate and refuses one the CA did not
sign (it cannot demand one: Prometheus and probes read /metrics on the same
port). UDP probes and gossip are not TLS: the gossip key (AES-GCM) seals and
authenticates them, and also authenticates push-pull, so a TLS client without
the key is still refused.

Certificates rotate (cert-manager renews them every few weeks, a Secret volume
swaps its files), so ``ReloadingTLS`` watches the three files and, when one
changes, loads new contexts that every later connection uses; connections open
at that moment keep theirs. The HTTP server's context cannot be replaced under
a listening socket, so the context handed to it picks the one in force for each
handshake from its server-name callback, which OpenSSL runs on every ClientHello.
Files that cannot be used (half written, a key that does not match) keep the
contexts in force, with a log line giving the reason and a counted metric.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

import structlog
from prometheus_client import Counter

from agent.cluster.keyfile import stamp


class PeerTLSError(ValueError):
    """The TLS files cannot be used, with the reason (never their content)."""


@dataclass(frozen=True)
class PeerTLS:
    ca_path: str
    cert_path: str
    key_path: str
    server_name: str = ""  # checked against the peer's certificate; "" means the host dialled

    def check(self) -> None:
        """Load both contexts once so a bad file fails at start, not at the first join."""
        missing = [flag for flag, path in (("--cluster.tls-ca-path", self.ca_path),
                                           ("--cluster.tls-cert-path", self.cert_path),
                                           ("--cluster.tls-key-path", self.key_path)) if not path]
        if missing:
            raise PeerTLSError("--cluster.enable-tls needs " + ", ".join(missing))
        self.client_context()
        self.server_context()

    def stamp(self) -> tuple[tuple[int, int, int], ...]:
        """What changes when any of the files is rewritten or replaced (a symlink swapped)."""
        return tuple(stamp(path) for path in (self.ca_path, self.cert_path, self.key_path))

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self._load(ctx)
        return ctx

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self._load(ctx)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx

    def _load(self, ctx: ssl.SSLContext) -> None:
        try:
            ctx.load_verify_locations(cafile=self.ca_path)
        except (OSError, ssl.SSLError) as exc:
            raise PeerTLSError(f"CA file {self.ca_path}: {_reason(exc)}") from None
        try:
            ctx.load_cert_chain(self.cert_path, self.key_path)
        except (OSError, ssl.SSLError) as exc:
            raise PeerTLSError(
                f"certificate {self.cert_path} with key {self.key_path}: {_reason(exc)}"
            ) from None


def _reason(exc: Exception) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc.args[-1] if exc.args else exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


class ReloadingTLS:
    """The peer TLS contexts in force, replaced when the files change on disk."""

    def __init__(self, tls: PeerTLS) -> None:
        self.tls = tls
        self._stamp = tls.stamp()  # before reading: a change while we read is seen next check
        self.client: ssl.SSLContext = tls.client_context()
        self._server = tls.server_context()
        # Handed to the HTTP server once; every handshake switches to the context in force.
        self._front = tls.server_context()
        self._front.sni_callback = self._pick
        self.log = structlog.get_logger("cluster.tls")

    @property
    def server_name(self) -> str:
        return self.tls.server_name

    def server_context(self) -> ssl.SSLContext:
        return self._front

    def _pick(self, conn: ssl.SSLObject | ssl.SSLSocket, _name: str | None,
              _ctx: ssl.SSLContext) -> None:
        conn.context = self._server

    def check(self) -> str:
        """Load the files again if they changed: "unchanged", "ok" or "error" (kept the old)."""
        now = self.tls.stamp()
        if now == self._stamp:
            return "unchanged"
        self._stamp = now
        try:
            client, server = self.tls.client_context(), self.tls.server_context()
        except PeerTLSError as exc:
            self.log.error("peer TLS files not usable; keeping the certificates in force",
                           err=str(exc))
            return "error"
        self.client, self._server = client, server
        self.log.info("peer TLS files reloaded", cert=self.tls.cert_path)
        return "ok"

    async def watch(self, every: float, reloads: Counter) -> None:
        """Check the files every ``every`` seconds, counting each reload by its result."""
        while True:
            await asyncio.sleep(every)
            result = await asyncio.to_thread(self.check)
            if result != "unchanged":
                reloads.labels(result).inc()
