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
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass


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
