"""Agents in network namespaces, so a partition is made with the network, not simulated.

Each agent gets a namespace with one veth whose other end is on a bridge in the
root namespace; the bridge holds the subnet's first address, where the targets
and Prometheus listen, so they stay reachable from every namespace. Taking an
agent's link down cuts it off from its peers, its targets and the backend at
once, as a node losing its network does (the kernel here has no netem, so loss
and delay are not modelled). Subnets are 10.213.<index>.0/24, one index per
harness (tests and loadtest use different ones), so two harnesses can run at
once. Everything is removed by ``cleanup``, which also runs first, so namespaces
and links left by a killed run never get in the way.

A split (``split``) cuts the cluster into groups that no longer reach each
other while every group still reaches the targets and the backend, as a network
fault between racks or zones does: each namespace drops, with iptables in that
namespace, every packet to or from the other groups' addresses. Dropped
silently, as a lost route drops them, so senders wait for their timeouts rather
than read an error.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests import procs


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


def iptables(ns: str, *args: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "iptables", "-w", "5", *args],
                   capture_output=True, text=True, check=True, timeout=10)


class Net:
    """A bridge 10.213.<index>.1/24 and one namespace per agent at 10.213.<index>.<i + 2>."""

    def __init__(self, index: int) -> None:
        if not 0 <= index <= 255:
            raise ValueError(f"subnet index {index} is not 0-255")
        self.index = index
        self.bridge = f"shbr{index}"
        self.host = f"10.213.{index}.1"  # the root namespace's end: targets and backend
        self.namespaces: list[str] = []

    def ns(self, i: int) -> str:
        return f"shoal{self.index}-{i}"

    def addr(self, i: int) -> str:
        return f"10.213.{self.index}.{i + 2}"

    def link(self, i: int) -> str:
        return f"sh{self.index}v{i}"  # the root namespace's end of agent i's veth

    def up(self, n: int) -> None:
        """Create the bridge and ``n`` namespaces (after removing stale ones)."""
        self.cleanup()
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.host}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for i in range(n):
            ns, peer = self.ns(i), f"sh{self.index}p{i}"
            ip("netns", "add", ns)
            self.namespaces.append(ns)
            ip("link", "add", self.link(i), "type", "veth", "peer", "name", peer)
            ip("link", "set", self.link(i), "master", self.bridge, "up")
            ip("link", "set", peer, "netns", ns)
            ip("-n", ns, "link", "set", peer, "name", "eth0")
            ip("-n", ns, "addr", "add", f"{self.addr(i)}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")

    def partition(self, i: int) -> None:
        """Cut agent ``i`` off: its veth loses carrier on both ends."""
        ip("link", "set", self.link(i), "down")

    def heal(self, i: int) -> None:
        ip("link", "set", self.link(i), "up")

    def split(self, groups: list[list[int]]) -> None:
        """Cut the agents into ``groups`` that cannot reach one another (targets stay reachable)."""
        for g, group in enumerate(groups):
            others = [self.addr(j) for h, other in enumerate(groups) if h != g for j in other]
            for i in group:
                for addr in others:
                    iptables(self.ns(i), "-A", "INPUT", "-s", addr, "-j", "DROP")
                    iptables(self.ns(i), "-A", "OUTPUT", "-d", addr, "-j", "DROP")

    def lose(self, share: float) -> None:
        """Drop ``share`` of the packets between agents at random, each way (iptables'
        statistic match on every namespace's input from the others); targets and backend
        are spared. The kernel here has no netem, so this is loss without delay."""
        for i, ns in enumerate(self.namespaces):
            for j in range(len(self.namespaces)):
                if j != i:
                    iptables(ns, "-A", "INPUT", "-s", self.addr(j), "-m", "statistic",
                             "--mode", "random", "--probability", f"{share:.4f}", "-j", "DROP")

    def unsplit(self) -> None:
        """Remove every split and loss rule: each namespace's filter chains are ours alone."""
        for ns in self.namespaces:
            iptables(ns, "-F", "INPUT")
            iptables(ns, "-F", "OUTPUT")

    def cleanup(self) -> None:
        """Remove this index's namespaces (their veths go with them) and the bridge; never raises."""
        listed = ip("netns", "list", check=False).stdout.split("\n")
        for line in listed:
            name = line.split(" ")[0]
            if name.startswith(f"shoal{self.index}-"):
                ip("netns", "del", name, check=False)
        links = ip("-o", "link", "show", check=False).stdout.split("\n")
        for line in links:
            parts = line.split(": ")
            if len(parts) > 1 and parts[1].split("@")[0].startswith(f"sh{self.index}v"):
                ip("link", "del", parts[1].split("@")[0], check=False)
        ip("link", "del", self.bridge, check=False)
        self.namespaces.clear()

    def get(self, i: int, url: str, timeout: float = 3.0) -> str:
        """GET ``url`` from inside agent ``i``'s namespace (reachable while it is partitioned)."""
        out = subprocess.run(
            ["ip", "netns", "exec", self.ns(i), "curl", "-sf", "--max-time", str(timeout), url],
            capture_output=True, text=True, timeout=timeout + 5,
        )
        if out.returncode:
            raise OSError(f"GET {url} in {self.ns(i)}: curl exit {out.returncode}")
        return out.stdout

    def agent(self, i: int, workdir: Path, config: Path, *flags: str) -> procs.Proc:
        """``shoal run`` inside agent ``i``'s namespace (``ip netns exec`` execs, so the pid and
        process group are the agent's own: signals reach it directly)."""
        workdir.mkdir(parents=True, exist_ok=True)
        return procs.spawn(
            [
                "ip", "netns", "exec", self.ns(i),
                sys.executable, "-m", "agent", "run",
                f"--storage.path={workdir / 'data'}", *flags, str(config),
            ],
            workdir, "agent",
        )


@contextlib.contextmanager
def network(index: int, n: int) -> Iterator[Net]:
    net = Net(index)
    try:
        net.up(n)
        yield net
    finally:
        net.cleanup()
