"""The gossip key file (``--cluster.gossip-key-file``): the AES-GCM keys, one per line, for rotation.

Each non-empty line that does not start with ``#`` is the base64 of a 16, 24 or
32-byte key (``head -c 32 /dev/urandom | base64`` makes one). The first line seals
what this agent sends; every line opens what it receives. Rotation without a
gap: add the new key as a second line on every agent, then move it first, then
remove the old one; agents read the file again when it changes. Errors name the
line and the reason, never the content, so a key cannot reach a log.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path


class KeyFileError(ValueError):
    """The key file cannot be used; the message says why without quoting it."""


def parse_keys(text: str) -> tuple[bytes, ...]:
    keys: list[bytes] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            key = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            raise KeyFileError(f"line {number} is not base64") from None
        if len(key) not in (16, 24, 32):
            raise KeyFileError(
                f"line {number} decodes to {len(key)} bytes; a key is 16, 24 or 32 bytes"
            )
        keys.append(key)
    if not keys:
        raise KeyFileError("no key in the file")
    return tuple(keys)


def read_keys(path: str) -> tuple[bytes, ...]:
    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise KeyFileError(f"cannot read gossip key file {path}: {reason}") from None
    try:
        return parse_keys(text)
    except KeyFileError as exc:
        raise KeyFileError(f"gossip key file {path}: {exc}") from None


def stamp(path: str) -> tuple[int, int, int]:
    """What changes when the file is rewritten or replaced (a Secret volume swaps a symlink)."""
    try:
        st = Path(path).stat()
    except OSError:
        return (0, 0, 0)
    return (st.st_ino, st.st_mtime_ns, st.st_size)
