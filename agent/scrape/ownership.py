"""Which targets this agent scrapes when several agents share them.

The scrape engine does not know how agents agree: it asks an :class:`Ownership`
(the cluster engine's answer, handed in by ``prometheus.scrape`` when its
``clustering`` block is enabled) whether a target's key is its own. The key is
a target's stable identity, not all its labels: Alloy hashes every non-meta
label, and its users get a target scraped twice or never when one label (a
pod's changing annotation, a discovery quirk) differs between agents. Job,
scheme, address, metrics path and URL parameters are what make a target the
same endpoint everywhere.

Ownership is asked for a time: a scrape slot's scheduled wall time. The cluster
schedules a member's growing share for an announced instant, so the agent that
loses a target and the one that gains it agree on which slot is the last of one
and the first of the other; ``switches`` says when such changes are pending, so a
pool starts the gaining loop before its first slot.
"""

from __future__ import annotations

from typing import Protocol

from agent import labels as L
from agent.labels import Labels

# The labels that make a target the same endpoint on every agent.
DEFAULT_KEY_LABELS: tuple[str, ...] = ("job", L.SCHEME, L.ADDRESS, L.METRICS_PATH)


# Where Kubernetes discovery says a target runs: node role (kubelet, cAdvisor), pod role,
# endpoints and endpointslice roles (the backing pod's node).
NODE_LABELS: tuple[str, ...] = (
    "__meta_kubernetes_node_name",
    "__meta_kubernetes_pod_node_name",
    "__meta_kubernetes_endpoint_node_name",
    "__meta_kubernetes_endpointslice_endpoint_node_name",
)


def target_node(discovered: Labels) -> str:
    """The node a discovered target runs on, or "" (node-affine clustering scrapes it there)."""
    d = dict(discovered)
    return next((d[n] for n in NODE_LABELS if d.get(n)), "")


class Ownership(Protocol):
    """The agent's share of the targets, as the cluster sees it now."""

    def owns(self, key: bytes, at: float | None = None) -> bool:
        """Whether this agent scrapes the target with this key (in the slot at unix time
        ``at``; None: now)."""
        ...

    def owner(self, key: bytes) -> str:
        """The name of the agent that scrapes it now (for debug info and the UI)."""
        ...

    def switches(self) -> tuple[float, ...]:
        """Unix times, earliest first, at which ownership is scheduled to change."""
        ...


def target_key(labels: Labels, key_labels: tuple[str, ...] = DEFAULT_KEY_LABELS) -> bytes:
    """A target's identity from its final labels: the key labels and every ``__param_*``.

    Fields are separated by the byte 0xff, which never occurs in UTF-8, so two
    different targets never share a key.
    """
    d = dict(labels)
    parts = [d.get(n, "") for n in key_labels]
    parts += [f"{n}={v}" for n, v in labels if n.startswith(L.PARAM_PREFIX)]
    return b"\xff".join(p.encode() for p in parts)
