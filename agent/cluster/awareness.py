"""Local health awareness (Lifeguard): a node that misses its own deadlines slows itself down.

When probes this node sends go unanswered although the helpers it asked do answer
(missed nacks), or when it has to refute suspicions of itself, the likelier
explanation is that this node is slow (CPU starved, paused), not that its peers
are dead. The score stretches this node's probe interval and timeout, so it
accuses less, instead of accusing others.
"""

from __future__ import annotations


class Awareness:
    def __init__(self, max_multiplier: int) -> None:
        self._max = max_multiplier
        self.score = 0  # 0 is healthy; up to max_multiplier - 1

    def apply(self, delta: int) -> int:
        self.score = min(max(self.score + delta, 0), self._max - 1)
        return self.score

    def scale(self, timeout: float) -> float:
        return timeout * (self.score + 1)
