"""The rules that demote a starved member and bring it back gradually, without processes:
the weighted ring (a returning member's keys come only from the others, and grow with its
weight), the one publication rule every peer applies, the canary, and the ramp field on the
wire (an older agent, which does not send it, counts as holding its full share)."""

from __future__ import annotations

from collections import Counter

import pytest

from agent.cluster.member import Progress, Role
from agent.cluster.messages import (
    _PB,
    BadMessage,
    State,
    decode_packet,
    encode_message,
    encode_packet,
    packet_header,
)
from agent.cluster.ring import Ring
from agent.cluster.service import Options, behind, canary

KEYS = [f"job/http/10.0.{i // 256}.{i % 256}:9100/metrics" for i in range(6_000)]
NAMES = ["a", "b", "c", "d"]


def owners(ring: Ring) -> dict[str, str | None]:
    return {k: ring.owner(k) for k in KEYS}


def test_full_weights_are_the_plain_ring() -> None:
    assert owners(Ring(NAMES, b"s", {n: 1.0 for n in NAMES})) == owners(Ring(NAMES, b"s"))


def test_weight_zero_is_absent_and_a_ramp_takes_keys_only_from_the_others() -> None:
    without = owners(Ring(NAMES[:-1], b"s"))
    full = owners(Ring(NAMES, b"s"))
    assert owners(Ring(NAMES, b"s", {"d": 0.0})) == without
    taken_before: set[str] = set()
    for w in (0.125, 0.25, 0.5, 0.75):
        now = owners(Ring(NAMES, b"s", {"d": w}))
        taken = {k for k, o in now.items() if o == "d"}
        # Only keys that are d's in the full ring, and never fewer as the weight grows.
        assert all(full[k] == "d" for k in taken)
        assert taken_before <= taken
        # Every other key stays where it is without d: nothing moves between the others.
        assert all(now[k] == without[k] for k in KEYS if k not in taken)
        share = len(taken) / sum(1 for o in full.values() if o == "d")
        assert abs(share - w) < 0.05, (w, share)
        taken_before = taken


def test_everyone_ramping_still_owns_every_key_once() -> None:
    counts = Counter(owners(Ring(NAMES, b"s", {n: 0.0 for n in NAMES})).values())
    assert None not in counts and sum(counts.values()) == len(KEYS)
    # With nobody accepting, the top-ranked member keeps the key: the plain ring's split.
    assert counts == Counter(owners(Ring(NAMES, b"s")).values())


def test_weights_of_members_not_in_the_ring_are_ignored() -> None:
    ring = Ring(["a", "b"], b"", {"c": 0.1, "a": 1.5, "b": -1.0})
    assert ring.partial == {"b": 0.0}


OPTS = Options()


@pytest.mark.parametrize(
    ("progress", "is_behind"),
    [
        (Progress(), False),  # nothing due (draining, or no targets): not behind
        (Progress(scrapes_on_time=50, scrapes_due=50, loop_lag=0.2), False),
        (Progress(scrapes_on_time=41, scrapes_due=50), False),  # a few ticks missed
        (Progress(scrapes_on_time=39, scrapes_due=50), True),
        (Progress(scrapes_on_time=50, scrapes_due=50, loop_lag=1.5), True),
    ],
)
def test_one_rule_for_a_publication(progress: Progress, is_behind: bool) -> None:
    assert behind(progress, OPTS) is is_behind


def test_the_canary_reads_near_one_on_an_idle_thread() -> None:
    # Not a timing assertion: a spin gets at least some of its wall time on any machine.
    assert 0.0 < canary(0.005) <= 1.0


def state(p: Progress) -> State:
    return State("node-a", "127.0.0.1:7946", 3, Role.PARTICIPANT, p)


def test_ramp_left_round_trips() -> None:
    pkt = encode_packet(packet_header("c"), [encode_message(state(Progress(ramp_left=0.875)))])
    (got,) = decode_packet(pkt, "c")
    assert isinstance(got, State) and got.progress.ramp_left == 0.875


def test_an_older_agent_without_the_field_holds_its_full_share() -> None:
    """Version 1 as first shipped had no field 7: its progress decodes to ramp_left 0."""
    msg = _PB["Msg"](alive=_PB["State"](
        name="old", addr="127.0.0.1:1", incarnation=1, role=0,
        progress=_PB["Progress"](on_time=3, due=3, timestamp=1.0),
    )).SerializeToString()
    (got,) = decode_packet(encode_packet(packet_header("c"), [msg]), "c")
    assert isinstance(got, State) and got.progress.ramp_left == 0.0
    assert 1.0 - got.progress.ramp_left == 1.0


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), float("inf")])
def test_a_ramp_outside_zero_to_one_is_refused(bad: float) -> None:
    pkt = encode_packet(packet_header("c"), [encode_message(state(Progress(ramp_left=bad)))])
    with pytest.raises(BadMessage) as err:
        decode_packet(pkt, "c")
    assert err.value.reason == "invalid"
