"""Sealed frames: only the same key and the same cluster name open them."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from agent.cluster.keyfile import KeyFileError, read_keys
from agent.cluster.keyring import Keyring
from agent.cluster.messages import BadMessage

K1, K2 = b"1" * 32, b"2" * 16


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def reason(keyring: Keyring, frame: bytes) -> str:
    with pytest.raises(BadMessage) as e:
        keyring.open(frame)
    return e.value.reason


def test_seal_open_round_trip_and_nonces_differ() -> None:
    k = Keyring((K1,), "prod")
    a, b = k.seal(b"hello"), k.seal(b"hello")
    assert a != b and k.open(a) == b"hello" == k.open(b)
    assert b"hello" not in a


def test_other_key_other_cluster_and_plain_frames_are_unauthenticated() -> None:
    sealed = Keyring((K1,), "prod").seal(b"x")
    assert reason(Keyring((K2,), "prod"), sealed) == "unauthenticated"
    assert reason(Keyring((K1,), "staging"), sealed) == "unauthenticated"
    assert reason(Keyring((), "prod"), sealed) == "unauthenticated"
    assert reason(Keyring((K1,), "prod"), Keyring((), "prod").seal(b"x")) == "unauthenticated"


def test_tampering_version_and_truncation() -> None:
    k = Keyring((K1,), "prod")
    frame = bytearray(k.seal(b"payload"))
    frame[-1] ^= 1
    assert reason(k, bytes(frame)) == "unauthenticated"
    assert reason(k, b"\x09\x01" + bytes(40)) == "version"
    assert reason(k, b"\x01") == "malformed"
    assert reason(k, b"\x01\x01short") == "malformed"
    assert reason(k, b"\x01\x07" + bytes(40)) == "malformed"


def test_rotation_a_second_key_still_opens() -> None:
    old = Keyring((K1,), "prod")
    rotating = Keyring((K2, K1), "prod")
    assert rotating.open(old.seal(b"a")) == b"a"
    assert reason(old, rotating.seal(b"b")) == "unauthenticated"


def test_key_file_lines_comments_and_errors_without_content(tmp_path: Path) -> None:
    k1, k2 = os.urandom(32), os.urandom(16)
    path = tmp_path / "keys"
    path.write_text(f"# rotation: new key second, then first\n{b64(k1)}\n\n  {b64(k2)}  \n")
    assert read_keys(str(path)) == (k1, k2)
    secret = b64(os.urandom(20))
    path.write_text(f"{b64(k1)}\n{secret}\n")
    with pytest.raises(KeyFileError) as e:
        read_keys(str(path))
    assert "line 2" in str(e.value) and "20 bytes" in str(e.value) and secret not in str(e.value)
    path.write_text("not base64!\n")
    with pytest.raises(KeyFileError, match="line 1 is not base64"):
        read_keys(str(path))
    path.write_text("# only a comment\n")
    with pytest.raises(KeyFileError, match="no key"):
        read_keys(str(path))
    with pytest.raises(KeyFileError, match="cannot read"):
        read_keys(str(tmp_path / "missing"))


def test_replacing_keys_rotates_without_dropping_the_old_peers() -> None:
    old, new = os.urandom(32), os.urandom(32)
    a, b = Keyring((old,), "prod"), Keyring((old,), "prod")
    b.replace((old, new))  # step 1: b opens both, still seals with old
    assert a.open(b.seal(b"x")) == b"x"
    b.replace((new, old))  # step 2: b seals with new; a must have both first
    assert reason(a, b.seal(b"x")) == "unauthenticated"
    a.replace((new, old))
    assert a.open(b.seal(b"x")) == b"x"
