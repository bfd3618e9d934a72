"""Failure-detector and gossip settings, in one place so the defaults and their reasons stay together.

The defaults are chosen so that a member that stops answering on a LAN is declared
dead well within two 15 s scrape intervals (docs/clustering.md works the numbers):
probes every second with a 500 ms timeout, and a suspicion timeout of 4 s that may
stretch to 12 s while no other member confirms it. Alloy's library probes every
5 s and waits 20 to 120 s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Settings:
    """Everything the membership engine can be tuned by; validated on construction."""

    name: str
    bind_host: str = "127.0.0.1"
    bind_port: int = 0  # UDP and TCP use the same number; 0 picks a free one
    advertise_host: str = ""  # default: bind_host
    cluster_name: str = ""  # two clusters with different names never merge
    # AES-GCM keys (16, 24 or 32 bytes); the first seals. Left out of repr so they never reach a log.
    keys: tuple[bytes, ...] = field(default=(), repr=False)
    probe_interval: float = 1.0
    probe_timeout: float = 0.5
    indirect_checks: int = 3
    suspicion_mult: float = 4.0
    suspicion_max_timeout_mult: float = 3.0
    awareness_max_multiplier: int = 8
    gossip_interval: float = 0.2
    gossip_nodes: int = 3
    gossip_to_the_dead: float = 15.0
    retransmit_mult: int = 4
    push_pull_interval: float = 10.0
    rejoin_interval: float = 30.0  # push-pull with the join addresses again, to heal split brain
    dead_reap: float = 60.0  # how long dead and left members are remembered
    # How long the address of a member forgotten while dead is still tried by the reconnect
    # rule (serf's reconnect_timeout), so a partition longer than dead_reap heals in seconds.
    reconnect_timeout: float = 3600.0
    tcp_timeout: float = 2.0
    metadata_min_interval: float = 1.0  # progress updates are published at most this often
    leave_timeout: float = 2.0
    seed: bytes = b""  # cluster-wide seed of the ownership hash

    def __post_init__(self) -> None:
        problems = []
        if not self.name or len(self.name) > 128:
            problems.append("name must be 1 to 128 characters")
        if len(self.cluster_name) > 128:
            problems.append("cluster_name must be at most 128 characters")
        for k in self.keys:
            if len(k) not in (16, 24, 32):
                problems.append("every key must be 16, 24 or 32 bytes (AES-128/192/256)")
                break
        if not 0 <= self.bind_port < 65536:
            problems.append("bind_port must be 0 to 65535")
        if self.probe_timeout <= 0 or self.probe_interval <= self.probe_timeout:
            problems.append("probe_timeout must be positive and shorter than probe_interval")
        if self.suspicion_mult < 1 or self.suspicion_max_timeout_mult < 1:
            problems.append("suspicion multipliers must be at least 1")
        if self.awareness_max_multiplier < 1 or self.indirect_checks < 0:
            problems.append("awareness_max_multiplier >= 1 and indirect_checks >= 0")
        if min(self.gossip_interval, self.push_pull_interval, self.tcp_timeout) <= 0:
            problems.append("intervals and timeouts must be positive")
        if problems:
            raise ValueError("cluster settings: " + "; ".join(problems))

    def suspicion_bounds(self, members: int) -> tuple[float, float]:
        """The shortest and longest suspicion timeout for a cluster of this size.

        memberlist's rule: the minimum grows with log10 of the size, so a large
        cluster (where confirmations take longer to arrive) waits a little longer.
        """
        lo = self.suspicion_mult * max(1.0, math.log10(max(members, 1))) * self.probe_interval
        return lo, lo * self.suspicion_max_timeout_mult

    def retransmit_limit(self, members: int) -> int:
        """How many times a gossip message is piggybacked: mult * ceil(log10(n + 1))."""
        return self.retransmit_mult * math.ceil(math.log10(members + 1))
