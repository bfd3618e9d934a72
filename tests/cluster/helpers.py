"""Several cluster nodes in one test process, each on its own 127.0.0.x address and thread."""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from agent.cluster import Liveness, Node, Settings
from agent.cluster.keyring import Keyring
from agent.cluster.messages import Message, encode_message, encode_packet, packet_header

_hosts = itertools.count(10)

# Faster push-pull and rejoin than the defaults so partitions heal quickly in tests;
# the failure detector keeps its documented defaults.
FAST = {"push_pull_interval": 2.0, "rejoin_interval": 2.0, "dead_reap": 120.0}


def next_host() -> str:
    n = next(_hosts)
    return f"127.0.{n // 250}.{n % 250 + 2}"


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll until the condition holds; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")


def liveness(node: Node, name: str) -> Liveness | None:
    m = node.view.get(name)
    return None if m is None else m.liveness


def all_alive(nodes: list[Node]) -> bool:
    names = {n.settings.name for n in nodes}
    return all(
        {m.name for m in n.members() if m.liveness is Liveness.ALIVE} >= names for n in nodes
    )


def split(cluster: list[Node], sides: list[int]) -> None:
    """Cut the nodes into sides (``sides[i]`` is node i's) that cannot reach one another."""
    hosts = [n.address.rsplit(":", 1)[0] for n in cluster]
    side = dict(zip(hosts, sides, strict=True))
    for n, h in zip(cluster, hosts, strict=True):
        n.set_transport_filter(
            lambda peer, mine=side[h]: side.get(peer.rsplit(":", 1)[0], mine) == mine
        )


class Nodes:
    """Makes nodes and stops every one of them at the end of a test."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.registries: dict[str, CollectorRegistry] = {}

    def make(self, name: str, join: list[str] | None = None, **settings: object) -> Node:
        s = Settings(
            name=name, **{"bind_host": next_host(), "cluster_name": "test", **FAST, **settings}
        )
        reg = CollectorRegistry()
        node = Node(s, registry=reg)
        node.start()
        self.nodes.append(node)
        self.registries[name] = reg
        if join:
            node.join(join)
        return node

    def cluster(self, count: int, prefix: str = "n", **settings: object) -> list[Node]:
        first = self.make(f"{prefix}0", **settings)
        rest = [self.make(f"{prefix}{i}", [first.address], **settings) for i in range(1, count)]
        nodes = [first, *rest]
        wait_until(lambda: all_alive(nodes), 15, "every node sees every other alive")
        return nodes

    def metric(self, node: Node, name: str, labels: dict[str, str] | None = None) -> float:
        return self.registries[node.settings.name].get_sample_value(name, labels or {}) or 0.0

    def stop_all(self) -> None:
        for n in self.nodes:
            n.stop(leave=False)


class RawPeer:
    """A bare UDP socket that speaks the wire format, for hostile or forged packets."""

    def __init__(self, cluster: str = "test", keys: tuple[bytes, ...] = ()) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((next_host(), 0))
        self.keyring = Keyring(keys, cluster)
        self.cluster = cluster

    def send_raw(self, node: Node, data: bytes) -> None:
        host, port = node.address.rsplit(":", 1)
        self.sock.sendto(data, (host, int(port)))

    def send(self, node: Node, messages: list[Message], cluster: str | None = None) -> None:
        body = encode_packet(
            packet_header(self.cluster if cluster is None else cluster),
            [encode_message(m) for m in messages],
        )
        self.send_raw(node, self.keyring.seal(body))

    def close(self) -> None:
        self.sock.close()
