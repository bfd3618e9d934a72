"""Several real nodes on loopback addresses, each with its own thread and sockets.

Waits are bounded polls; no test asserts how long anything took. The failure
detector runs with its documented defaults (probe 1 s, timeout 0.5 s,
suspicion 4-12 s), so "within the documented bound" means within 30 s.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time

import pytest

from agent.cluster import Liveness, Node, Progress, Role, View, asyncio_observer
from agent.cluster.messages import Dead, IndirectPing, State, Suspect
from tests.cluster.helpers import (
    Nodes,
    RawPeer,
    all_alive,
    liveness,
    next_host,
    split,
    wait_until,
)

DEAD_BOUND = 30.0


def record_liveness(node: Node, name: str) -> list[Liveness]:
    """Every liveness ``node`` reports for ``name``, in order, from its observer."""
    seen: list[Liveness] = []

    def observe(view: View) -> None:
        m = view.get(name)
        if m is not None and (not seen or seen[-1] is not m.liveness):
            seen.append(m.liveness)

    node.add_observer(observe)
    return seen


def test_join_converge_and_agree_on_ownership(nodes: Nodes) -> None:
    cluster = nodes.cluster(5)
    keys = [f"job/10.0.0.{i}:9100" for i in range(200)]
    owners = [[n.owner(k).name for k in keys] for n in cluster]  # type: ignore[union-attr]
    assert all(o == owners[0] for o in owners)
    assert len(set(owners[0])) == 5
    assert nodes.metric(cluster[0], "cluster_node_peers", {"state": "participant"}) == 5
    assert nodes.metric(cluster[0], "cluster_node_info", {"state": "participant"}) == 1
    assert nodes.metric(cluster[0], "cluster_node_gossip_proto_version") == 1
    assert nodes.metric(cluster[0], "cluster_transport_rx_packets_total") > 0


def test_state_and_progress_propagate_and_change_ownership(nodes: Nodes) -> None:
    a, b, c = nodes.cluster(3)
    c.set_role(Role.DRAINING)
    c.set_progress(Progress(scrapes_on_time=41, scrapes_due=42, loop_lag=0.25, timestamp=1.7e9))

    def seen_by(n: Node) -> bool:
        m = n.view.get("n2")
        return m is not None and m.role is Role.DRAINING and m.progress.scrapes_on_time == 41

    wait_until(lambda: seen_by(a) and seen_by(b), 10, "draining and progress seen by all")
    assert all(a.owner(f"k{i}").name != "n2" for i in range(300))  # type: ignore[union-attr]
    assert nodes.metric(a, "cluster_node_peers", {"state": "draining"}) == 1
    c.set_role(Role.PARTICIPANT)
    wait_until(lambda: a.view.get("n2").role is Role.PARTICIPANT, 10, "back to participant")  # type: ignore[union-attr]


def test_progress_updates_are_coalesced_and_the_latest_wins(nodes: Nodes) -> None:
    a, b = nodes.cluster(2)
    before = a.view.get("n1").incarnation  # type: ignore[union-attr]
    for i in range(1, 201):
        b.set_progress(Progress(scrapes_on_time=i, scrapes_due=200, timestamp=float(i)))
    wait_until(
        lambda: a.view.get("n1").progress.scrapes_on_time == 200,  # type: ignore[union-attr]
        10,
        "the last progress reached a",
    )
    assert a.view.get("n1").incarnation - before < 20  # type: ignore[union-attr]


def test_a_stopped_node_is_suspected_then_dead_within_the_bound(nodes: Nodes) -> None:
    a, b, c, d = nodes.cluster(4)
    seen = record_liveness(a, "n3")
    d.stop(leave=False)  # sockets closed, nobody told
    wait_until(
        lambda: all(liveness(n, "n3") is Liveness.DEAD for n in (a, b, c)), DEAD_BOUND, "n3 dead"
    )
    assert seen[-1] is Liveness.DEAD and Liveness.SUSPECT in seen
    assert all(n.owner(f"k{i}").name != "n3" for n in (a, b, c) for i in range(100))  # type: ignore[union-attr]


def test_a_suspected_live_node_refutes_with_a_higher_incarnation(nodes: Nodes) -> None:
    a, b, c = nodes.cluster(3)
    before = a.view.get("n2").incarnation  # type: ignore[union-attr]
    liar = RawPeer()
    try:
        # a forged accusation reaches a, which suspects n2 and gossips it; n2 refutes
        liar.send(a, [Suspect("n2", before, "liar")])
        wait_until(
            lambda: all(n.view.get("n2").incarnation > before for n in (a, b, c)),  # type: ignore[union-attr]
            10,
            "n2's refutation reached everyone",
        )
        wait_until(lambda: all_alive([a, b, c]), 10, "n2 alive everywhere")
        assert (
            nodes.metric(c, "cluster_node_gossip_received_events_total", {"event": "refute"}) >= 1
        )
        # a forged death notice is refuted as well
        now = a.view.get("n2").incarnation  # type: ignore[union-attr]
        liar.send(b, [Dead("n2", now, "liar")])
        wait_until(
            lambda: a.view.get("n2").incarnation > now and all_alive([a, b, c]), 10, "refuted"
        )  # type: ignore[union-attr]
    finally:
        liar.close()


def test_lifeguard_a_slow_node_does_not_get_healthy_nodes_declared_dead(nodes: Nodes) -> None:
    cluster = nodes.cluster(4)
    slow = cluster[3]
    healthy = {n.settings.name for n in cluster[:3]}
    declared: list[tuple[str, str]] = []
    for n in cluster:
        n.add_observer(
            lambda v, who=n.settings.name: declared.extend(
                (who, m.name)
                for m in v.members
                if m.name in healthy and m.liveness is Liveness.DEAD
            )
        )
    stop = threading.Event()

    def starve() -> None:
        # block the slow node's protocol thread for 2.5 s out of every 3: longer than a
        # probe interval, so its peers' probes fail and they suspect it
        while not stop.is_set():
            slow._loop.call_soon_threadsafe(time.sleep, 2.5)  # type: ignore[union-attr]
            time.sleep(3.0)

    def refuted() -> bool:
        name = "cluster_node_gossip_received_events_total"
        return nodes.metric(slow, name, {"event": "refute"}) >= 1

    t = threading.Thread(target=starve, daemon=True)
    t.start()
    try:
        # its peers suspect it; it refutes, which raises its own awareness score
        wait_until(refuted, 30, "the slow node was suspected and refuted it")
        time.sleep(8)  # keep it slow for longer than a suspicion timeout
    finally:
        stop.set()
        t.join()
    assert declared == []
    wait_until(lambda: all_alive(cluster), 30, "everyone alive again after the slowness ends")


def test_indirect_probes_route_around_a_broken_link(nodes: Nodes) -> None:
    a, b, c, d = nodes.cluster(4)
    seen = [record_liveness(n, "n1") for n in (a, c, d)] + [record_liveness(b, "n0")]
    b_host = b.address.rsplit(":", 1)[0]
    a_host = a.address.rsplit(":", 1)[0]
    a.set_transport_filter(lambda peer: not peer.startswith(b_host + ":"))
    b.set_transport_filter(lambda peer: not peer.startswith(a_host + ":"))
    time.sleep(10)  # ten probe rounds: a and b probe each other directly and fail
    assert all(Liveness.SUSPECT not in s and Liveness.DEAD not in s for s in seen)
    assert (
        nodes.metric(a, "cluster_node_gossip_received_events_total", {"event": "node_suspect"}) == 0
    )


def test_an_isolated_node_blames_itself_through_missed_nacks(nodes: Nodes) -> None:
    a, b, c = nodes.cluster(3)
    a.set_transport_filter(lambda peer: False)
    # every probe fails and no helper's nack arrives: a's own score rises and stays up
    wait_until(
        lambda: nodes.metric(a, "cluster_node_gossip_health_score") >= 2, 30, "a's score rises"
    )
    assert nodes.metric(b, "cluster_node_gossip_health_score") <= 1
    a.set_transport_filter(None)
    wait_until(lambda: all_alive([a, b, c]), 40, "a rejoins once the network is back")
    wait_until(
        lambda: nodes.metric(a, "cluster_node_gossip_health_score") == 0, 30, "a's score recovers"
    )


def test_graceful_leave_is_seen_as_left_without_suspicion(nodes: Nodes) -> None:
    a, b, c = nodes.cluster(3)
    seen = record_liveness(a, "n2")
    c.stop(leave=True)
    wait_until(
        lambda: liveness(a, "n2") is Liveness.LEFT and liveness(b, "n2") is Liveness.LEFT,
        10,
        "left",
    )
    assert Liveness.SUSPECT not in seen and Liveness.DEAD not in seen


def test_a_partition_heals_through_push_pull(nodes: Nodes) -> None:
    cluster = nodes.cluster(4)
    split(cluster, [0, 0, 1, 1])
    names = [n.settings.name for n in cluster]
    wait_until(
        lambda: (
            liveness(cluster[0], names[2]) is Liveness.DEAD
            and liveness(cluster[3], names[0]) is Liveness.DEAD
        ),
        DEAD_BOUND,
        "each side declares the other dead",
    )
    assert cluster[0].owner("some-target").name in names[:2]  # type: ignore[union-attr]
    for n in cluster:
        n.set_transport_filter(None)
    wait_until(lambda: all_alive(cluster), 30, "views converge after healing")
    keys = [f"t{i}" for i in range(100)]
    wait_until(
        lambda: len({tuple(n.owner(k).name for k in keys) for n in cluster}) == 1,  # type: ignore[union-attr]
        10,
        "ownership agrees",
    )


def test_bad_packets_are_counted_by_reason_and_dropped(nodes: Nodes) -> None:
    a, b = nodes.cluster(2)
    peer, other = RawPeer(), RawPeer(cluster="elsewhere")
    try:
        peer.send_raw(a, b"\x00garbage")  # frame version 0
        peer.send_raw(a, b"\x01\x00\xff\xff\xff")  # plain frame, corrupt protobuf
        peer.send_raw(a, b"\x01\x00" + b"\x00" * 1600)  # too big
        peer.send_raw(a, b"\x01\x01" + b"\x00" * 64)  # sealed, but a has no key
        other.send(a, [State("x", "127.0.0.1:1", 1, Role.PARTICIPANT, Progress())])
        peer.send(a, [State("n1", "127.0.9.9:1", 99, Role.PARTICIPANT, Progress())])  # n1's name
        reasons = [
            "version",
            "malformed",
            "oversized",
            "unauthenticated",
            "cluster",
            "name_conflict",
        ]
        wait_until(
            lambda: all(
                nodes.metric(a, "shoal_cluster_messages_dropped_total", {"reason": r}) >= 1
                for r in reasons
            ),
            10,
            "every kind counted",
        )
        assert nodes.metric(a, "cluster_transport_rx_packets_failed_total") >= 5
        rng = random.Random(13)
        for _ in range(300):
            peer.send_raw(a, bytes([1, rng.choice((0, 1))]) + rng.randbytes(rng.randrange(200)))
        # push-pull streams: an absurd length, then a frame that is not ours
        host, port = a.address.rsplit(":", 1)
        for payload in (b"\xff\xff\xff\xff", b"\x00\x00\x00\x05\x01\x00\xde\xad\x00"):
            with socket.create_connection((host, int(port)), timeout=5) as conn:
                conn.sendall(payload)
                assert conn.recv(16) == b""  # closed without an answer
        wait_until(
            lambda: nodes.metric(a, "cluster_transport_stream_rx_packets_failed_total") >= 2,
            10,
            "bad streams counted",
        )
        # an indirect ping may not make a node probe an address that is not a member's
        bystander = RawPeer()
        host, port = bystander.sock.getsockname()
        peer.send(a, [IndirectPing(7, "nobody", f"{host}:{port}", "x", "127.0.0.1:1")])
        bystander.sock.settimeout(1.5)
        with pytest.raises(TimeoutError):
            bystander.sock.recv(2048)
        bystander.close()
        assert {m.name for m in a.members()} == {"n0", "n1"}
        assert a.view.get("n1").addr == b.address  # type: ignore[union-attr]
        time.sleep(2)
        assert all_alive([a, b])
    finally:
        peer.close()
        other.close()


def test_a_different_key_or_cluster_name_never_merges(nodes: Nodes) -> None:
    key_a, key_b = b"a" * 32, b"b" * 32
    first = nodes.make("k0", keys=(key_a,))
    second = nodes.make("k1", [first.address], keys=(key_a,))
    wait_until(lambda: all_alive([first, second]), 10, "same key merges")
    intruder = nodes.make("k2", keys=(key_b,))
    assert intruder.join([first.address]) == 0
    stranger = nodes.make("s0", cluster_name="other", keys=(key_a,))
    assert stranger.join([first.address]) == 0
    plain = nodes.make("p0")
    assert plain.join([first.address]) == 0
    time.sleep(3)
    assert {m.name for m in first.members()} == {"k0", "k1"}
    assert {m.name for m in intruder.members()} == {"k2"}
    assert (
        nodes.metric(first, "shoal_cluster_messages_dropped_total", {"reason": "unauthenticated"})
        >= 3
    )


def test_observers_run_on_the_asyncio_loop_they_are_given(nodes: Nodes) -> None:
    a = nodes.make("o0")

    async def run() -> tuple[set[str], bool]:
        loop = asyncio.get_running_loop()
        got: asyncio.Queue[View] = asyncio.Queue()
        on_loop: list[bool] = []

        def observe(view: View) -> None:
            on_loop.append(asyncio.get_running_loop() is loop)
            got.put_nowait(view)

        remove = a.add_observer(asyncio_observer(loop, observe))
        b = await asyncio.to_thread(nodes.make, "o1", [a.address])
        while True:
            view = await asyncio.wait_for(got.get(), 10)
            if view.get(b.settings.name) is not None:
                remove()
                return {m.name for m in view.members}, all(on_loop)

    names, on_loop = asyncio.run(run())
    assert names == {"o0", "o1"} and on_loop
    assert nodes.metric(a, "cluster_node_update_observers") == 0


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def test_a_node_that_joined_too_early_finds_the_cluster_by_rejoining(nodes: Nodes) -> None:
    host = next_host()
    port = free_port(host)
    early = nodes.make("early", [f"{host}:{port}"])  # nobody there yet: alone, seeds kept
    assert {m.name for m in early.members()} == {"early"}
    seed = nodes.make("seed", bind_host=host, bind_port=port)
    wait_until(lambda: all_alive([early, seed]), 20, "the rejoin interval merges them")


def test_a_restarted_member_takes_over_its_name(nodes: Nodes) -> None:
    a, b, c = nodes.cluster(3)
    c.set_role(Role.DRAINING)
    wait_until(lambda: a.view.get("n2").role is Role.DRAINING, 10, "draining seen")  # type: ignore[union-attr]
    old_incarnation = a.view.get("n2").incarnation  # type: ignore[union-attr]
    c.stop(leave=False)  # crash
    # same name and address, a participant again, incarnation starting from 0: the cluster
    # still holds the old instance's higher incarnation, so the new one must refute it
    port = int(c.address.rsplit(":", 1)[1])
    again = nodes.make("n2", [a.address], bind_host=c.settings.bind_host, bind_port=port)

    def taken_over() -> bool:
        views = [n.view.get("n2") for n in (a, b)]
        return all(
            m is not None and m.incarnation > old_incarnation and m.role is Role.PARTICIPANT
            for m in views
        ) and all_alive([a, b, again])

    wait_until(taken_over, 30, "the new instance refuted the old one's state")
    again.stop(leave=False)
    # same name at a new address: refused while the old address is alive, taken once it is dead
    moved = nodes.make("n2", [a.address])
    wait_until(
        lambda: (
            all(n.view.get("n2").addr == moved.address for n in (a, b)) and all_alive([a, b, moved])
        ),  # type: ignore[union-attr]
        60,
        "the name moved to the new address",
    )
