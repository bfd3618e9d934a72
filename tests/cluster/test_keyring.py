"""Sealed frames: only the same key and the same cluster name open them."""

from __future__ import annotations

import pytest

from agent.cluster.keyring import Keyring
from agent.cluster.messages import BadMessage

K1, K2 = b"1" * 32, b"2" * 16


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
