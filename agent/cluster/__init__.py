"""The cluster engine: SWIM membership with Lifeguard, authenticated gossip, rendezvous ownership.

This package imports nothing from the runtime, components, server or commands;
the wiring into ``shoal run`` holds a ``Node``. Import from here, not from the
modules behind it.
"""

from agent.cluster.member import Liveness, Member, Progress, Role, TargetDigest
from agent.cluster.messages import BadMessage
from agent.cluster.node import Node, Observer, View, asyncio_observer
from agent.cluster.ring import Ring
from agent.cluster.settings import Settings
from agent.cluster.transport import Dialer

__all__ = [
    "BadMessage",
    "Dialer",
    "Liveness",
    "Member",
    "Node",
    "Observer",
    "Progress",
    "Ring",
    "Role",
    "Settings",
    "TargetDigest",
    "View",
    "asyncio_observer",
]
