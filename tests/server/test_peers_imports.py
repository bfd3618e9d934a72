"""The push-pull route the app serves is the path the cluster engine posts to.

agent/server/peers.py spells the path itself so that serving it does not import the engine.
"""

from __future__ import annotations

from agent.cluster.service import PUSH_PULL_PATH
from agent.server import peers


def test_the_app_serves_push_pull_where_peers_post_it() -> None:
    assert peers.PUSH_PULL_PATH == PUSH_PULL_PATH
