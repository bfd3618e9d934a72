"""--cluster.join-addresses read as Alloy reads them: IPs, names with a port, SRV names."""

from __future__ import annotations

import socket
import struct
import threading

from agent.cluster.joinaddrs import resolve, srv_lookup


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
