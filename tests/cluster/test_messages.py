"""The wire format: round trips, validation with reasons, size bounds, and fuzzing of the decoders."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.cluster.broadcast import BroadcastQueue
from agent.cluster.keyring import Keyring
from agent.cluster.member import Liveness, Progress, Role, TargetDigest
from agent.cluster.messages import (
    _PB,
    MAX_DIGESTS,
    MAX_MESSAGES,
    Ack,
    BadMessage,
    Dead,
    IndirectPing,
    Nack,
    Ping,
    State,
    Suspect,
    decode_packet,
    decode_push_pull,
    encode_message,
    encode_packet,
    encode_push_pull,
    framed_size,
    packet_header,
)
from agent.cluster.transport import MAX_PACKET

HEADER = packet_header("c1")
STATE = State("node-a", "127.0.0.1:7946", 7, Role.DRAINING, Progress(10, 12, 0.2, 0.01, 1.5, 1.7e9))
EVERY = [
    Ping(1, "node-b", "node-a", "127.0.0.1:7946"),
    IndirectPing(2, "node-c", "127.0.0.3:7946", "node-a", "127.0.0.1:7946"),
    Ack(3),
    Nack(4),
    STATE,
    Suspect("node-c", 5, "node-a"),
    Dead("node-c", 6, "node-c"),
]


def packet(*messages: object, header: bytes = HEADER) -> bytes:
    return encode_packet(header, [encode_message(m) for m in messages])  # type: ignore[arg-type]


def test_every_message_round_trips() -> None:
    assert decode_packet(packet(*EVERY), "c1") == EVERY


def test_push_pull_round_trips_with_liveness() -> None:
    states = [STATE, State("x", "[::1]:1", 1, Role.PARTICIPANT, Progress(), Liveness.SUSPECT)]
    pp = decode_push_pull(encode_push_pull("c1", True, states), "c1")
    assert pp.join and pp.states == states


@pytest.mark.parametrize(
    "message, reason",
    [
        (Ping(1, "x" * 129, "a", "127.0.0.1:1"), "invalid"),
        (Ping(1, "b", "a\n", "127.0.0.1:1"), "invalid"),
        (Ping(1, "b", "a", "no-port"), "invalid"),
        (Ping(1, "b", "", "127.0.0.1:1"), "invalid"),
        (State("a", "127.0.0.1:99999", 1, Role.PARTICIPANT, Progress()), "invalid"),
        (State("a", "127.0.0.1:1", 1, Role.PARTICIPANT, Progress(loop_lag=math.nan)), "invalid"),
        (State("a", "127.0.0.1:1", 1, Role.PARTICIPANT, Progress(wal_fsync=-1.0)), "invalid"),
        (State("a", "127.0.0.1:1", 1, Role.PARTICIPANT, Progress(), Liveness.DEAD), "invalid"),
    ],
)
def test_invalid_messages_are_refused_with_a_reason(message: object, reason: str) -> None:
    with pytest.raises(BadMessage) as e:
        decode_packet(packet(message), "c1")
    assert e.value.reason == reason


def test_unknown_enum_values_are_refused() -> None:
    msg = _PB["Msg"]()
    msg.alive.name, msg.alive.addr, msg.alive.role = "a", "127.0.0.1:1", 9
    with pytest.raises(BadMessage, match="unknown role"):
        decode_packet(encode_packet(HEADER, [msg.SerializeToString()]), "c1")


def test_wrong_version_cluster_and_count() -> None:
    with pytest.raises(BadMessage) as e:
        decode_packet(_PB["Packet"](version=2, cluster="c1").SerializeToString(), "c1")
    assert e.value.reason == "version"
    with pytest.raises(BadMessage) as e:
        decode_packet(packet(Ack(1)), "other")
    assert e.value.reason == "cluster"
    with pytest.raises(BadMessage, match="messages in one packet"):
        decode_packet(packet(*[Ack(i) for i in range(MAX_MESSAGES + 1)]), "c1")
    with pytest.raises(BadMessage) as e:
        decode_packet(encode_packet(HEADER, [b""]), "c1")  # a message with no body
    assert e.value.reason == "invalid"


def test_a_full_gossip_packet_stays_under_the_datagram_bound_when_sealed() -> None:
    queue = BroadcastQueue(lambda: 4, framed_size)
    big = Progress(2**31, 2**31, 1e300, 1e300, 1e300, 1e300)
    for i in range(200):
        queue.queue(
            f"{'m' * 120}{i}",
            encode_message(
                State(f"{'m' * 120}{i}", "[ffff::1]:65535", 2**63, Role.TERMINATING, big)
            ),
        )
    budget = MAX_PACKET - len(HEADER) - 32
    sealed = Keyring((b"k" * 32,), "c1").seal(encode_packet(HEADER, queue.take(budget)))
    assert 1000 < len(sealed) <= MAX_PACKET


def test_broadcasts_replace_older_news_and_retire_after_the_limit() -> None:
    queue = BroadcastQueue(lambda: 2, framed_size)
    queue.queue("a", b"old")
    queue.queue("a", b"new")
    queue.queue("b", b"bee")
    assert sorted(queue.take(100)) == [b"bee", b"new"]
    assert queue.pending("a") is False
    queue.queue("c", b"sea")
    assert queue.take(100)[0] == b"sea"  # least transmitted first
    assert queue.take(100) == [b"sea"]  # a and b reached the limit of 2 and are gone
    assert queue.take(100) == [] and len(queue) == 0


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2000))
def test_garbage_raises_only_bad_message(data: bytes) -> None:
    for decode in (decode_packet, decode_push_pull):
        try:
            decode(data, "c1")
        except BadMessage:
            pass
    try:
        Keyring((b"k" * 16,), "c1").open(data)
    except BadMessage:
        pass


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_mutated_valid_packets_raise_only_bad_message(data: st.DataObject) -> None:
    raw = bytearray(packet(*EVERY))
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        for m in decode_packet(bytes(raw), "c1"):
            assert type(m) in {type(x) for x in EVERY}
    except BadMessage:
        pass


def test_target_digests_round_trip_are_bounded_and_fit_one_datagram() -> None:
    most = tuple(TargetDigest((1 << 32) - 1 - i, (1 << 64) - 1 - i, 9_999_999) for i in range(MAX_DIGESTS))
    state = replace(STATE, name="n" * 128, digests=most)
    encoded = encode_message(state)
    sealed = Keyring((b"k" * 32,), "c1").seal(encode_packet(HEADER, [encoded]))
    assert len(sealed) <= MAX_PACKET  # the largest state still travels in one packet
    assert decode_packet(encode_packet(HEADER, [encoded]), "c1") == [state]
    too_many = replace(state, digests=(*most, TargetDigest(1, 2, 3)))
    with pytest.raises(BadMessage, match="target digests") as e:
        decode_packet(encode_packet(HEADER, [encode_message(too_many)]), "c1")
    assert e.value.reason == "invalid"
    too_big = replace(STATE, digests=(TargetDigest(1, 2, 10_000_001),))
    with pytest.raises(BadMessage, match="count out of range"):
        decode_packet(encode_packet(HEADER, [encode_message(too_big)]), "c1")
