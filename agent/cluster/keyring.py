"""Sealing and opening gossip frames: AES-GCM with the shared keys, the cluster name bound in.

Every UDP packet and push-pull stream is one frame: a frame version byte, a kind
byte (plain or sealed), then the body. A sealed body is a random 96-bit nonce and
the AES-GCM ciphertext; the associated data is the cluster name, so a packet of
another cluster fails authentication even under the same key. Several keys may be
installed for rotation: the first seals, every one is tried to open.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent.cluster.messages import BadMessage

FRAME_VERSION = 1
_PLAIN, _SEALED = 0, 1
NONCE = 12
OVERHEAD = 2 + NONCE + 16  # header, nonce, GCM tag


class Keyring:
    """The keys of one node; an empty keyring sends and accepts only plain frames."""

    def __init__(self, keys: tuple[bytes, ...], cluster_name: str) -> None:
        self._aeads = [AESGCM(k) for k in keys]
        self._ad = b"shoal-cluster\x00" + cluster_name.encode()

    def replace(self, keys: tuple[bytes, ...]) -> None:
        """Install another set of keys (rotation); the caller's thread is the only user."""
        self._aeads = [AESGCM(k) for k in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._aeads)

    def seal(self, body: bytes) -> bytes:
        if not self._aeads:
            return bytes((FRAME_VERSION, _PLAIN)) + body
        nonce = os.urandom(NONCE)
        return (
            bytes((FRAME_VERSION, _SEALED)) + nonce + self._aeads[0].encrypt(nonce, body, self._ad)
        )

    def open(self, frame: bytes) -> bytes:
        """The body of a frame, or BadMessage: version, unauthenticated or malformed."""
        if len(frame) < 2:
            raise BadMessage("malformed", "frame shorter than its header")
        if frame[0] != FRAME_VERSION:
            raise BadMessage("version", f"frame version {frame[0]}, expected {FRAME_VERSION}")
        kind = frame[1]
        if kind == _PLAIN:
            if self._aeads:
                raise BadMessage("unauthenticated", "plain frame while a key is configured")
            return frame[2:]
        if kind != _SEALED:
            raise BadMessage("malformed", f"unknown frame kind {kind}")
        if not self._aeads:
            raise BadMessage("unauthenticated", "sealed frame but no key is configured")
        if len(frame) < OVERHEAD:
            raise BadMessage("malformed", "sealed frame shorter than nonce and tag")
        nonce, sealed = frame[2 : 2 + NONCE], frame[2 + NONCE :]
        for aead in self._aeads:
            try:
                return aead.decrypt(nonce, sealed, self._ad)
            except InvalidTag:
                continue
        raise BadMessage("unauthenticated", "no key opens it (other key or other cluster)")
