"""A partition that outlasts ``dead_reap``: each side has forgotten the other, and the join
addresses cannot help (every node joined through the first, which is on one side; a node
that sees as many members as it has join addresses does not try them). Healing must then
come from the addresses of members forgotten while dead, which the reconnect rule keeps
trying for ``reconnect_timeout``; the rejoin interval is set far beyond the test.
"""

from __future__ import annotations

from agent.cluster import Liveness
from tests.cluster.helpers import Nodes, all_alive, split, wait_until

DEAD_BOUND = 30.0


def test_a_partition_longer_than_dead_reap_heals_without_the_rejoin_interval(
    nodes: Nodes,
) -> None:
    cluster = nodes.cluster(4, dead_reap=2.0, rejoin_interval=600.0, push_pull_interval=1.0)
    split(cluster, [0, 0, 1, 1])
    names = [n.settings.name for n in cluster]

    def forgotten() -> bool:
        views = [{m.name for m in n.members()} for n in cluster]
        return views[0] == views[1] == set(names[:2]) and views[2] == views[3] == set(names[2:])

    wait_until(forgotten, DEAD_BOUND + 10, "each side forgets the other after dead_reap")
    for n in cluster:
        n.set_transport_filter(None)
    wait_until(lambda: all_alive(cluster), 20, "views converge after healing")
    assert all(m.liveness is Liveness.ALIVE for n in cluster for m in n.members())
