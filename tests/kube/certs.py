"""Certificates for the stand-ins, made by trustme: one CA that clients trust, and a server
certificate valid for the names a client in or outside a cluster dials."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

SERVER_NAMES = ("localhost", "127.0.0.1", "::1", "kubernetes", "kubernetes.default.svc")


@dataclass(frozen=True)
class CertFiles:
    ca: Path  # PEM, what clients trust (ca.crt in a service-account folder)
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


def make_certs(folder: Path, names: tuple[str, ...] = SERVER_NAMES,
               prefix: str = "tls") -> CertFiles:
    """ca.crt, <prefix>.crt and <prefix>.key in folder; files already there are reused, so a
    restarted stand-in keeps the certificate its clients trust."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = CertFiles(folder / "ca.crt", folder / f"{prefix}.crt", folder / f"{prefix}.key")
    if files.ca.exists() and files.cert.exists() and files.key.exists():
        return files
    ca_key = folder / "ca.key"
    if files.ca.exists() and ca_key.exists():
        ca = trustme.CA.from_pem(files.ca.read_bytes(), ca_key.read_bytes())
    else:
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(files.ca))
        ca.private_key_pem.write_to_path(str(ca_key))
    leaf = ca.issue_cert(*names)
    leaf.cert_chain_pems[0].write_to_path(str(files.cert))
    for extra in leaf.cert_chain_pems[1:]:
        with open(files.cert, "ab") as f:
            f.write(extra.bytes())
    leaf.private_key_pem.write_to_path(str(files.key))
    return files
