"""``--cluster.join-addresses`` to the host:port list a node joins through, as Alloy reads it.

Each comma-separated entry is an IP with an optional port, a DNS name with a
port (every A record, at that port), or a DNS name without a port, looked up as
an SRV record (``_alloy._tcp.example`` style or any name; each target's A records
at the port the record gives). An entry without a port that is an IP gets the
agent's own HTTP port, since peers listen where we do. The standard library has
no SRV lookup, so ``srv_lookup`` asks the first nameserver of /etc/resolv.conf
with one UDP query; a name that fails to resolve is reported with the reason and
left out, so one bad entry does not keep the agent out of the cluster.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import struct
from collections.abc import Callable
from pathlib import Path

from agent.cluster.member import join_addr, split_addr

_SRV = 33


class ResolveError(ValueError):
    """An entry that names no peer, with the reason."""


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _a_records(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)
    except OSError as exc:
        raise ResolveError(f"{host}: {exc.strerror or exc}") from None
    return list(dict.fromkeys(join_addr(str(i[4][0]), port) for i in infos))


def resolve(
    entries: str,
    default_port: int,
    srv: Callable[[str], list[tuple[str, int]]] | None = None,
) -> tuple[list[str], list[str]]:
    """The peers' host:port addresses, and one error line per entry that named none."""
    srv = srv or srv_lookup
    out: list[str] = []
    errors: list[str] = []
    for raw in entries.split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            if _is_ip(entry):
                out.append(join_addr(entry.strip("[]"), default_port))
                continue
            if ":" in entry:
                host, port = split_addr(entry)
                out.extend([join_addr(host, port)] if _is_ip(host) else _a_records(host, port))
                continue
            records = srv(entry)
            if not records:
                raise ResolveError(f"{entry}: no SRV records")
            for target, port in records:
                out.extend(_a_records(target, port))
        except ValueError as exc:
            errors.append(f"join address {entry!r}: {exc}")
    return list(dict.fromkeys(out)), errors


def _nameserver() -> str:
    try:
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                return parts[1]
    except OSError:
        pass
    return "127.0.0.1"


def _name(data: bytes, pos: int) -> tuple[str, int]:
    """A (possibly compressed) domain name at ``pos``; returns it and the position after it."""
    labels: list[str] = []
    end = -1
    for _ in range(128):  # bounds a malicious pointer loop
        length = data[pos]
        if length & 0xC0 == 0xC0:
            if end < 0:
                end = pos + 2
            pos = ((length & 0x3F) << 8) | data[pos + 1]
            continue
        if length == 0:
            return ".".join(labels), (end if end >= 0 else pos + 1)
        labels.append(data[pos + 1 : pos + 1 + length].decode("ascii", "replace"))
        pos += 1 + length
    raise ResolveError("DNS answer has a name pointer loop")


def srv_lookup(
    name: str, server: str | None = None, timeout: float = 2.0, port: int = 53
) -> list[tuple[str, int]]:
    """(target, port) of each SRV record of ``name``, by priority then weight."""
    qid = random.randrange(1 << 16)
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    query = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", _SRV, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(query, (server or _nameserver(), port))
            data = s.recv(4096)
        except OSError as exc:
            raise ResolveError(f"SRV lookup of {name}: {exc}") from None
    try:
        rid, flags, qd, an = struct.unpack(">HHHH", data[:8])
        if rid != qid:
            raise ResolveError(f"SRV lookup of {name}: answer to another query")
        if flags & 0xF:
            raise ResolveError(f"SRV lookup of {name}: DNS error code {flags & 0xF}")
        pos = 12
        for _ in range(qd):
            _, pos = _name(data, pos)
            pos += 4
        records: list[tuple[int, int, str, int]] = []
        for _ in range(an):
            _, pos = _name(data, pos)
            rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", data[pos : pos + 10])
            pos += 10
            if rtype == _SRV:
                prio, weight, port = struct.unpack(">HHH", data[pos : pos + 6])
                target, _ = _name(data, pos + 6)
                records.append((prio, -weight, target, port))
            pos += rdlen
    except (struct.error, IndexError):
        raise ResolveError(f"SRV lookup of {name}: malformed DNS answer") from None
    return [(t, p) for _, _, t, p in sorted(records)]
