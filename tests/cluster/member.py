"""A cluster member in a process of its own, for tests that signal it (SIGSTOP, SIGCONT).

Usage: python -m tests.cluster.member NAME HOST JOIN_ADDRESS. Prints ``ADDRESS host:port``
once started (log lines go to stdout too), then runs until stdin closes.
"""

from __future__ import annotations

import sys

from agent.cluster import Node, Settings
from tests.cluster.helpers import FAST


def main() -> None:
    name, host, join = sys.argv[1:4]
    node = Node(Settings(name=name, bind_host=host, cluster_name="test", **FAST))  # type: ignore[arg-type]
    node.start()
    print("ADDRESS", node.address, flush=True)
    node.join([join])
    sys.stdin.read()
    node.stop()


if __name__ == "__main__":
    main()
