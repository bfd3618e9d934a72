"""The gossip wire format: protobuf messages built in code, decoded and validated before use.

One UDP packet carries a version, the cluster name and a list of messages (a
probe plus piggybacked gossip); a TCP push-pull carries the whole member table.
Nothing from the network is used before ``decode_*`` has checked every string's
length, every enum and every count: bad input raises ``BadMessage`` with a reason
that the transport counts. There is no protoc here, so the descriptor is built in
code as in agent/scrape/metrics_pb.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from agent.cluster.member import Liveness, Progress, Role, TargetDigest, split_addr
from agent.protowire import varint

PROTO_VERSION = 1
MAX_NAME = 128
MAX_ADDR = 262
MAX_MESSAGES = 64  # per UDP packet
MAX_MEMBERS = 4096  # per push-pull
MAX_COUNT = 10_000_000
MAX_DIGESTS = 32  # clustered components compared per member (about 17 bytes each on the wire)

_F = descriptor_pb2.FieldDescriptorProto
_OPT, _REP = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_U32, _U64, _STR, _MSG, _D, _BOOL, _X32, _X64 = (
    _F.TYPE_UINT32,
    _F.TYPE_UINT64,
    _F.TYPE_STRING,
    _F.TYPE_MESSAGE,
    _F.TYPE_DOUBLE,
    _F.TYPE_BOOL,
    _F.TYPE_FIXED32,
    _F.TYPE_FIXED64,
)


def _build() -> dict[str, type]:
    f = descriptor_pb2.FileDescriptorProto(
        name="shoal_cluster.proto", package="shoal.cluster", syntax="proto3"
    )

    def msg(name: str, fields: list[tuple], oneof: str = "") -> None:
        m = f.message_type.add(name=name)
        if oneof:
            m.oneof_decl.add(name=oneof)
        for fname, number, ftype, *rest in fields:
            label = _REP if "rep" in rest else _OPT
            fd = m.field.add(name=fname, number=number, type=ftype, label=label, json_name=fname)
            if ftype == _MSG:
                fd.type_name = ".shoal.cluster." + rest[0]
            if oneof:
                fd.oneof_index = 0

    msg(
        "Progress",
        [
            ("on_time", 1, _U32),
            ("due", 2, _U32),
            ("loop_lag", 3, _D),
            ("fsync", 4, _D),
            ("rw_lag", 5, _D),
            ("timestamp", 6, _D),
            # Added after version 1 shipped; absent (older agents) reads 0: a full share.
            ("ramp_left", 7, _D),
            # Added later still: the instant a grown share applies from, and the share before.
            # Absent (older agents) reads 0: the announced share applies now.
            ("ramp_at", 8, _D),
            ("ramp_from", 9, _D),
        ],
    )
    msg("Digest", [("component", 1, _X32), ("digest", 2, _X64), ("targets", 3, _U32)])
    msg(
        "State",
        [
            ("name", 1, _STR),
            ("addr", 2, _STR),
            ("incarnation", 3, _U64),
            ("role", 4, _U32),
            ("progress", 5, _MSG, "Progress"),
            ("liveness", 6, _U32),
            ("digests", 7, _MSG, "Digest", "rep"),
        ],
    )
    msg(
        "Ping",
        [("seq", 1, _U32), ("target", 2, _STR), ("source", 3, _STR), ("source_addr", 4, _STR)],
    )
    msg(
        "IndirectPing",
        [
            ("seq", 1, _U32),
            ("target", 2, _STR),
            ("target_addr", 3, _STR),
            ("source", 4, _STR),
            ("source_addr", 5, _STR),
        ],
    )
    msg("Ack", [("seq", 1, _U32)])
    msg("Nack", [("seq", 1, _U32)])
    msg("Accuse", [("name", 1, _STR), ("incarnation", 2, _U64), ("accuser", 3, _STR)])
    msg(
        "Msg",
        [
            ("ping", 1, _MSG, "Ping"),
            ("indirect", 2, _MSG, "IndirectPing"),
            ("ack", 3, _MSG, "Ack"),
            ("nack", 4, _MSG, "Nack"),
            ("alive", 5, _MSG, "State"),
            ("suspect", 6, _MSG, "Accuse"),
            ("dead", 7, _MSG, "Accuse"),
        ],
        oneof="body",
    )
    msg("Packet", [("version", 1, _U32), ("cluster", 2, _STR), ("msgs", 3, _MSG, "Msg", "rep")])
    msg(
        "PushPull",
        [
            ("version", 1, _U32),
            ("cluster", 2, _STR),
            ("join", 3, _BOOL),
            ("states", 4, _MSG, "State", "rep"),
        ],
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return {
        m.name: message_factory.GetMessageClass(
            pool.FindMessageTypeByName("shoal.cluster." + m.name)
        )
        for m in f.message_type
    }


_PB = _build()


class BadMessage(Exception):
    """A packet or stream that must be dropped; ``reason`` is the metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Ping:
    seq: int
    target: str  # the name the prober expects; a different node at that address ignores it
    source: str
    source_addr: str


@dataclass(frozen=True)
class IndirectPing:
    seq: int
    target: str
    target_addr: str
    source: str
    source_addr: str


@dataclass(frozen=True)
class Ack:
    seq: int


@dataclass(frozen=True)
class Nack:
    seq: int


@dataclass(frozen=True)
class State:
    """A member's self-description (an alive message); push-pull adds the sender's verdict."""

    name: str
    addr: str
    incarnation: int
    role: Role
    progress: Progress
    liveness: Liveness = Liveness.ALIVE
    digests: tuple[TargetDigest, ...] = ()


@dataclass(frozen=True)
class Suspect:
    name: str
    incarnation: int
    accuser: str


@dataclass(frozen=True)
class Dead:
    """A death notice; ``accuser == name`` means the member left on purpose."""

    name: str
    incarnation: int
    accuser: str


Message = Ping | IndirectPing | Ack | Nack | State | Suspect | Dead


@dataclass(frozen=True)
class PushPull:
    join: bool
    states: list[State]


# -- encoding ---------------------------------------------------------------


def _progress_pb(p: Progress) -> object:
    return _PB["Progress"](
        on_time=p.scrapes_on_time,
        due=p.scrapes_due,
        loop_lag=p.loop_lag,
        fsync=p.wal_fsync,
        rw_lag=p.remote_write_lag,
        timestamp=p.timestamp,
        ramp_left=p.ramp_left,
        ramp_at=p.ramp_at,
        ramp_from=p.ramp_from,
    )


def _state_pb(s: State) -> object:
    return _PB["State"](
        name=s.name,
        addr=s.addr,
        incarnation=s.incarnation,
        role=int(s.role),
        progress=_progress_pb(s.progress),
        liveness=int(s.liveness),
        digests=[
            _PB["Digest"](component=d.component, digest=d.digest, targets=d.targets)
            for d in s.digests
        ],
    )


def encode_message(m: Message) -> bytes:
    """One message as the bytes of a ``Msg``; broadcasts are kept encoded, so size is known."""
    pb = _PB["Msg"]
    if isinstance(m, Ping):
        out = pb(
            ping=_PB["Ping"](seq=m.seq, target=m.target, source=m.source, source_addr=m.source_addr)
        )
    elif isinstance(m, IndirectPing):
        out = pb(
            indirect=_PB["IndirectPing"](
                seq=m.seq,
                target=m.target,
                target_addr=m.target_addr,
                source=m.source,
                source_addr=m.source_addr,
            )
        )
    elif isinstance(m, Ack):
        out = pb(ack=_PB["Ack"](seq=m.seq))
    elif isinstance(m, Nack):
        out = pb(nack=_PB["Nack"](seq=m.seq))
    elif isinstance(m, State):
        out = pb(alive=_state_pb(m))
    elif isinstance(m, Suspect):
        out = pb(suspect=_PB["Accuse"](name=m.name, incarnation=m.incarnation, accuser=m.accuser))
    else:
        out = pb(dead=_PB["Accuse"](name=m.name, incarnation=m.incarnation, accuser=m.accuser))
    return out.SerializeToString()


def packet_header(cluster: str) -> bytes:
    return _PB["Packet"](version=PROTO_VERSION, cluster=cluster).SerializeToString()


def framed_size(encoded: bytes) -> int:
    """Bytes one encoded message takes inside a packet (tag, length, body)."""
    return 1 + len(varint(len(encoded))) + len(encoded)


def encode_packet(header: bytes, encoded: list[bytes]) -> bytes:
    """A packet from its header and already-encoded messages (field 3, repeated)."""
    return header + b"".join(b"\x1a" + varint(len(e)) + e for e in encoded)


def encode_push_pull(cluster: str, join: bool, states: list[State]) -> bytes:
    return _PB["PushPull"](
        version=PROTO_VERSION, cluster=cluster, join=join, states=[_state_pb(s) for s in states]
    ).SerializeToString()


# -- decoding and validation ------------------------------------------------


def _name(value: str, what: str) -> str:
    if not value or len(value) > MAX_NAME or not value.isprintable():
        raise BadMessage("invalid", f"{what} must be 1 to {MAX_NAME} printable characters")
    return value


def _addr(value: str, what: str) -> str:
    if len(value) > MAX_ADDR:
        raise BadMessage("invalid", f"{what} longer than {MAX_ADDR}")
    try:
        split_addr(value)
    except ValueError as e:
        raise BadMessage("invalid", f"{what}: {e}") from None
    return value


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value) or value < 0:
        raise BadMessage("invalid", f"{what} must be a finite non-negative number")
    return value


def _share(value: float, what: str) -> float:
    if not 0.0 <= value <= 1.0:  # NaN fails both comparisons
        raise BadMessage("invalid", f"{what} must be a share between 0 and 1")
    return value


def _state(pb: object) -> State:
    p = pb.progress  # type: ignore[attr-defined]
    if p.on_time > MAX_COUNT or p.due > MAX_COUNT:
        raise BadMessage("invalid", "progress counts out of range")
    digests = pb.digests  # type: ignore[attr-defined]
    if len(digests) > MAX_DIGESTS:
        raise BadMessage("invalid", f"{len(digests)} target digests (max {MAX_DIGESTS})")
    if any(d.targets > MAX_COUNT for d in digests):
        raise BadMessage("invalid", "target digest count out of range")
    try:
        role = Role(pb.role)  # type: ignore[attr-defined]
        liveness = Liveness(pb.liveness)  # type: ignore[attr-defined]
    except ValueError:
        raise BadMessage("invalid", "unknown role or liveness") from None
    return State(
        name=_name(pb.name, "member name"),  # type: ignore[attr-defined]
        addr=_addr(pb.addr, "member address"),  # type: ignore[attr-defined]
        incarnation=pb.incarnation,  # type: ignore[attr-defined]
        role=role,
        progress=Progress(
            scrapes_on_time=p.on_time,
            scrapes_due=p.due,
            loop_lag=_finite(p.loop_lag, "loop lag"),
            wal_fsync=_finite(p.fsync, "fsync latency"),
            remote_write_lag=_finite(p.rw_lag, "remote-write lag"),
            timestamp=_finite(p.timestamp, "progress timestamp"),
            ramp_left=_share(p.ramp_left, "ramp left"),
            ramp_at=_finite(p.ramp_at, "ramp switch time"),
            ramp_from=_share(p.ramp_from, "ramp share before the switch"),
        ),
        liveness=liveness,
        digests=tuple(TargetDigest(d.component, d.digest, d.targets) for d in digests),
    )


def _message(pb: object) -> Message:
    kind = pb.WhichOneof("body")  # type: ignore[attr-defined]
    if kind == "ping":
        b = pb.ping  # type: ignore[attr-defined]
        return Ping(
            b.seq,
            _name(b.target, "ping target"),
            _name(b.source, "ping source"),
            _addr(b.source_addr, "ping source address"),
        )
    if kind == "indirect":
        b = pb.indirect  # type: ignore[attr-defined]
        return IndirectPing(
            b.seq,
            _name(b.target, "indirect target"),
            _addr(b.target_addr, "indirect target address"),
            _name(b.source, "indirect source"),
            _addr(b.source_addr, "indirect source address"),
        )
    if kind == "ack":
        return Ack(pb.ack.seq)  # type: ignore[attr-defined]
    if kind == "nack":
        return Nack(pb.nack.seq)  # type: ignore[attr-defined]
    if kind == "alive":
        s = _state(pb.alive)  # type: ignore[attr-defined]
        if s.liveness is not Liveness.ALIVE:
            raise BadMessage("invalid", "an alive message with another liveness")
        return s
    if kind in ("suspect", "dead"):
        b = getattr(pb, kind)
        cls = Suspect if kind == "suspect" else Dead
        return cls(_name(b.name, "accused name"), b.incarnation, _name(b.accuser, "accuser name"))
    raise BadMessage("invalid", "empty or unknown message")


def _check_envelope(version: int, cluster: str, expected_cluster: str) -> None:
    if version != PROTO_VERSION:
        raise BadMessage("version", f"protocol version {version}, this node speaks {PROTO_VERSION}")
    if cluster != expected_cluster:
        raise BadMessage("cluster", f"cluster name {cluster[:MAX_NAME]!r} is not ours")


def decode_packet(data: bytes, cluster: str) -> list[Message]:
    try:
        pb = _PB["Packet"].FromString(data)
    except (DecodeError, RuntimeWarning, ValueError) as e:
        raise BadMessage("malformed", f"not a packet: {e}") from None
    _check_envelope(pb.version, pb.cluster, cluster)
    if len(pb.msgs) > MAX_MESSAGES:
        raise BadMessage("invalid", f"{len(pb.msgs)} messages in one packet (max {MAX_MESSAGES})")
    return [_message(m) for m in pb.msgs]


def decode_push_pull(data: bytes, cluster: str) -> PushPull:
    try:
        pb = _PB["PushPull"].FromString(data)
    except (DecodeError, RuntimeWarning, ValueError) as e:
        raise BadMessage("malformed", f"not a push-pull: {e}") from None
    _check_envelope(pb.version, pb.cluster, cluster)
    if len(pb.states) > MAX_MEMBERS:
        raise BadMessage(
            "invalid", f"{len(pb.states)} members in one push-pull (max {MAX_MEMBERS})"
        )
    return PushPull(pb.join, [_state(s) for s in pb.states])
