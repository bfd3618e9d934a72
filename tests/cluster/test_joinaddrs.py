"""--cluster.join-addresses read as Alloy reads them: IPs, names with a port, SRV names."""

from __future__ import annotations

import socket
import struct
import threading

from agent.cluster import Liveness, Node, Settings
from agent.cluster.joinaddrs import resolve, srv_lookup
from tests.cluster.helpers import FAST, Nodes, liveness, next_host, wait_until


def test_ips_names_with_port_and_bad_entries() -> None:
    peers, errors = resolve("10.0.0.1, 10.0.0.2:9000,localhost:7000,,bad:port:x", 12345)
    assert peers[:3] == ["10.0.0.1:12345", "10.0.0.2:9000", "127.0.0.1:7000"]
    assert len(errors) == 1 and "bad:port:x" in errors[0]


def test_names_without_port_are_srv_records() -> None:
    peers, errors = resolve("_shoal._tcp.example", 1, srv=lambda n: [("localhost", 4000)])
    assert (peers, errors) == (["127.0.0.1:4000"], [])
    peers, errors = resolve("_none._tcp.example", 1, srv=lambda n: [])
    assert peers == [] and "no SRV records" in errors[0]


def _answer(query: bytes) -> bytes:
    """A DNS answer with two SRV records (the second compressed against the question)."""
    qid = query[:2]
    question = query[12:]
    def srv(prio: int, weight: int, port: int, target: bytes) -> bytes:
        rdata = struct.pack(">HHH", prio, weight, port) + target
        return b"\xc0\x0c" + struct.pack(">HHIH", 33, 1, 30, len(rdata)) + rdata
    body = srv(20, 0, 7001, b"\x02p2\x07example\x00") + srv(10, 5, 7000, b"\x02p1\xc0\x0c")
    return qid + struct.pack(">HHHHH", 0x8180, 1, 2, 0, 0) + question + body


def test_srv_lookup_against_a_real_udp_nameserver() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]

        def serve() -> None:
            data, addr = server.recvfrom(512)
            server.sendto(_answer(data), addr)

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        records = srv_lookup("_shoal._tcp.example", server="127.0.0.1", port=port)
        t.join(5)
    assert records == [("p1._shoal._tcp.example", 7000), ("p2.example", 7001)]


class Nameserver:
    """A real UDP nameserver whose one SRV answer (targets as IP names) can be changed."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.records: list[tuple[str, int]] = []
        self.queries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            self.queries += 1
            body = b""
            for host, port in self.records:
                target = b"".join(bytes([len(p)]) + p.encode() for p in host.split(".")) + b"\0"
                rdata = struct.pack(">HHH", 10, 5, port) + target
                body += b"\xc0\x0c" + struct.pack(">HHIH", 33, 1, 5, len(rdata)) + rdata
            head = struct.pack(">HHHHH", 0x8180, 1, len(self.records), 0, 0)
            self.sock.sendto(data[:2] + head + data[12:] + body, addr)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def test_join_addresses_are_resolved_again_at_each_rejoin() -> None:
    """A headless Service whose pods changed: the SRV name now lists a peer that was not there
    at start; the node finds it at its next rejoin, without a restart."""
    ns = Nameserver()
    nodes = Nodes()
    try:
        b = nodes.make("b")
        c = nodes.make("c")  # not reachable through DNS yet, knows nobody
        b_host, b_port = b.address.split(":")
        ns.records = [(b_host, int(b_port))]

        def lookup() -> list[str]:
            srv = lambda name: srv_lookup(name, server="127.0.0.1", port=ns.port)  # noqa: E731
            return resolve("_shoal._tcp.example", 1, srv=srv)[0]

        settings = Settings(name="a", bind_host=next_host(), cluster_name="test",
                            **{**FAST, "rejoin_interval": 1.0})
        a = Node(settings, resolve_seeds=lookup)
        a.start()
        nodes.nodes.append(a)
        assert a.join(lookup()) == 1
        wait_until(lambda: liveness(a, "b") is Liveness.ALIVE, 10, "a joined b through DNS")
        assert liveness(a, "c") is None
        c_host, c_port = c.address.split(":")
        ns.records = [(c_host, int(c_port))]  # b's pod went away, c's came
        wait_until(lambda: liveness(a, "c") is Liveness.ALIVE, 10, "a found c at a rejoin")
        wait_until(lambda: liveness(c, "b") is Liveness.ALIVE, 10, "c learnt of b through a")
        # DNS down: the last addresses are kept, nothing is lost.
        ns.records = []
        queries = ns.queries
        wait_until(lambda: ns.queries > queries + 1, 10, "a looked the name up again")
        assert liveness(a, "c") is Liveness.ALIVE
    finally:
        nodes.stop_all()
        ns.close()
