"""What a member is: the record every node keeps about every other, and its immutable snapshot.

Two separate dimensions: liveness (alive, suspect, dead, left) is the failure
detector's verdict; role (participant, draining, terminating) is what the member
says about itself. Only alive-or-suspect participants own targets.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Liveness(enum.IntEnum):
    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


class Role(enum.IntEnum):
    PARTICIPANT = 0
    DRAINING = 1
    TERMINATING = 2


@dataclass(frozen=True)
class Progress:
    """A member's proof of progress, gossiped so peers can judge it by one local rule."""

    scrapes_on_time: int = 0  # scrapes completed on time in the last interval
    scrapes_due: int = 0  # scrapes that were due in the same interval
    loop_lag: float = 0.0  # seconds
    wal_fsync: float = 0.0  # seconds
    remote_write_lag: float = 0.0  # seconds
    timestamp: float = 0.0  # unix seconds when measured
    # Share of its ring share a returning member has not taken back yet (0: all of it, 1: none);
    # every agent weights it by 1 - ramp_left in its ring (agent/cluster/ring.py).
    ramp_left: float = 0.0
    # A growing share is scheduled: it applies from ramp_at (unix seconds, the member's clock);
    # before it the share was ramp_from (a weight, 0..1). 0 (and older agents, which do not
    # send it): the announced share applies now. Every agent, the member included, switches
    # at the same instant, so the scrape slot before it is the old owner's and the one at or
    # after it the new owner's: no slot scraped by nobody.
    ramp_at: float = 0.0
    ramp_from: float = 0.0

    def weight_at(self, at: float) -> float:
        """The member's ring weight at unix time ``at``."""
        return self.ramp_from if at < self.ramp_at else 1.0 - self.ramp_left


@dataclass(frozen=True)
class TargetDigest:
    """What one clustered component sees, small enough to gossip: agents that see different
    targets would split them wrongly (some scraped twice, some never), so they compare these."""

    component: int  # 32-bit hash of the component id (ids are long; each agent knows its own)
    digest: int  # 64-bit hash of the sorted target keys
    targets: int  # how many targets


@dataclass(frozen=True)
class Member:
    """One member as a node sees it at one moment (a snapshot; never mutated)."""

    name: str
    addr: str  # host:port of its gossip sockets (UDP and TCP)
    incarnation: int
    liveness: Liveness
    role: Role
    progress: Progress
    is_self: bool = False
    digests: tuple[TargetDigest, ...] = ()

    @property
    def owns_targets(self) -> bool:
        """Only members that are reachable (or not yet proven dead) and participating own keys."""
        return self.role is Role.PARTICIPANT and self.liveness in (Liveness.ALIVE, Liveness.SUSPECT)


def split_addr(addr: str) -> tuple[str, int]:
    """host:port (IPv6 in brackets) to a socket address, or ValueError with the reason."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host:
        raise ValueError(f"address {addr!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"address {addr!r} has no valid port")
    return host, int(port)


def join_addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
