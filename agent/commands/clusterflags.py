"""``shoal run``'s ``--cluster.*`` flags, with Alloy's names and meanings, to a cluster service.

Kept apart from run.py so the composition root holds one line per concern: the
flags are declared here and turned into an ``agent.cluster.ClusterService``
that gossips over UDP on the HTTP listen port's number and carries push-pull
through the agent's own HTTP server, so clustering needs no extra port.
"""

from __future__ import annotations

import argparse
import dataclasses
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY

from agent.components.prometheus_remote_write import PrometheusRemoteWrite
from agent.components.prometheus_scrape import PrometheusScrape
from agent.runtime.controller import Controller
from agent.scrape.loop import SKIP_LATE, SKIP_OVERRUN
from agent.server.http import parse_listen_addr
from agent.syntax.value import Duration

if TYPE_CHECKING:
    from agent.cluster.peertls import PeerTLS
    from agent.cluster.service import ClusterService

# The cluster engine (agent.cluster, cryptography for the gossip keyring, the protobuf
# messages: ~8 MiB resident) is imported by the functions below only once --cluster.enabled
# is on, so an agent that does not cluster never pays for it (tests/commands/test_imports.py).

# Accepted for compatibility with Alloy's command lines; a warning says what is ignored.
UNSUPPORTED = {
    "advertise-interfaces": "set --cluster.advertise-address instead",
    "discover-peers": "go-discover providers are not supported; use --cluster.join-addresses "
    "(DNS names resolve to every A record, names without a port as SRV records)",
}


class FlagError(ValueError):
    """A cluster flag with a value that cannot work, with the reason."""


def add_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("clustering (Alloy's flags)")
    g.add_argument("--cluster.enabled", dest="cluster_enabled", nargs="?", const="true", default="false",
                   help="join a cluster and share the targets of components with clustering enabled")
    g.add_argument("--cluster.node-name", dest="cluster_node_name", default="",
                   help="this agent's unique name in the cluster (default: the hostname)")
    g.add_argument("--cluster.advertise-address", dest="cluster_advertise_address", default="",
                   help="address peers reach this agent at (default: the listen host, or the "
                        "hostname's address when listening on every address)")
    g.add_argument("--cluster.join-addresses", dest="cluster_join_addresses", default="",
                   help="comma-separated peers: IP[:port], DNS name:port (every A record), "
                        "or a DNS name without port (SRV record)")
    g.add_argument("--cluster.rejoin-interval", dest="cluster_rejoin_interval", default="60s",
                   help="how often to rejoin the join addresses, healing partitions; 0 disables")
    g.add_argument("--cluster.max-join-peers", dest="cluster_max_join_peers", type=int, default=5,
                   help="how many of the join addresses to join at start; 0: all")
    g.add_argument("--cluster.name", dest="cluster_name", default="",
                   help="agents only form a cluster with agents of the same name")
    g.add_argument("--cluster.wait-for-size", dest="cluster_wait_for_size", type=int, default=0,
                   help="components own no targets until this many agents are in the cluster; 0 disables")
    g.add_argument("--cluster.wait-timeout", dest="cluster_wait_timeout", default="0s",
                   help="stop waiting for --cluster.wait-for-size after this long; 0 waits forever")
    g.add_argument("--cluster.enable-tls", dest="cluster_enable_tls", nargs="?", const="true",
                   default="false", help="push-pull and join between peers over HTTPS; the HTTP "
                   "server then serves TLS with the same certificate")
    g.add_argument("--cluster.tls-ca-path", dest="cluster_tls_ca_path", default="",
                   help="CA certificate file peers' certificates are checked against")
    g.add_argument("--cluster.tls-cert-path", dest="cluster_tls_cert_path", default="",
                   help="this agent's certificate file for peer TLS")
    g.add_argument("--cluster.tls-key-path", dest="cluster_tls_key_path", default="",
                   help="this agent's private key file for peer TLS")
    g.add_argument("--cluster.tls-server-name", dest="cluster_tls_server_name", default="",
                   help="name checked against peers' certificates (default: the address dialled)")
    g.add_argument("--cluster.gossip-key-file", dest="cluster_gossip_key_file", default="",
                   help="Shoal: file of base64 AES keys (16, 24 or 32 bytes), one per line; the first "
                        "seals gossip, every one opens it; read again when it changes (rotation)")
    # Failure-detector and stall settings as name=value,... for tests and drills (docs/clustering.md).
    g.add_argument("--cluster.tuning", dest="cluster_tuning", default="", help=argparse.SUPPRESS)
    for flag in UNSUPPORTED:
        g.add_argument(f"--cluster.{flag}", dest=_dest(flag), nargs="?", const="true", default=None,
                       help=argparse.SUPPRESS)


def _dest(flag: str) -> str:
    return "cluster_" + flag.replace("-", "_")


def enabled(args: argparse.Namespace) -> bool:
    return str(args.cluster_enabled).lower() in ("true", "1", "yes")


def ignored(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(flag, why) for each unsupported flag given."""
    return [(f"--cluster.{f}", why) for f, why in UNSUPPORTED.items() if getattr(args, _dest(f)) is not None]


# Calls (one a second, with the progress) over which scrapes completed and ticks skipped are summed.
TICK_WINDOW = 2
# How many calls after the one that saw a stall end still count the stall's skips: a loop whose
# tick fell inside it skips that tick when it next runs, which may be after that call.
STALL_SKIPS = 1

_NOT_TUNABLE = ("name", "keys", "seed", "cluster_name", "join", "resolve_join", "key_file", "tls")


def peer_tls(args: argparse.Namespace) -> PeerTLS | None:
    """Alloy's --cluster.enable-tls and --cluster.tls-* flags; None when TLS is off."""
    if not enabled(args) or str(args.cluster_enable_tls).lower() not in ("true", "1", "yes"):
        return None
    from agent.cluster.peertls import PeerTLS, PeerTLSError  # deferred: clustering is on

    tls = PeerTLS(args.cluster_tls_ca_path, args.cluster_tls_cert_path, args.cluster_tls_key_path,
                  args.cluster_tls_server_name)
    try:
        tls.check()
    except PeerTLSError as exc:
        raise FlagError(str(exc)) from None
    return tls


def server_tls(cluster: ClusterService | None) -> ssl.SSLContext | None:
    """What the HTTP server serves with: peers post push-pull to it over HTTPS. The service's
    context, so that certificates it reloads are served without a restart."""
    return None if cluster is None or cluster.tls is None else cluster.tls.server_context()


def _tuning(text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from agent.cluster import Settings  # deferred: only build() calls this, clustering is on
    from agent.cluster.service import Options

    settings_fields = {f.name: f for f in dataclasses.fields(Settings)}
    option_fields = {f.name: f for f in dataclasses.fields(Options)}
    to_settings: dict[str, Any] = {}
    to_options: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        name, sep, value = item.partition("=")
        target = to_settings if name in settings_fields else to_options if name in option_fields else None
        if not sep or target is None or name in _NOT_TUNABLE:
            raise FlagError(f"--cluster.tuning: {item!r} is not name=value of a tunable setting")
        kind = (settings_fields.get(name) or option_fields[name]).type
        try:
            target[name] = int(value) if kind == "int" else float(Duration(value) if value[-1:].isalpha() else value)
        except ValueError as exc:
            raise FlagError(f"--cluster.tuning: {item!r}: {exc}") from None
    return to_settings, to_options


def _seconds(flag: str, value: str) -> float:
    try:
        return float(Duration(value))
    except ValueError as exc:
        raise FlagError(f"--cluster.{flag}: {exc}") from None


def _advertise_host(args: argparse.Namespace, listen_host: str) -> str:
    if args.cluster_advertise_address:
        addr = args.cluster_advertise_address
        from agent.cluster.member import split_addr  # deferred: only build() calls this

        return split_addr(addr)[0] if ":" in addr else addr
    if listen_host not in ("", "0.0.0.0", "::"):
        return listen_host
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError as exc:
        raise FlagError(f"cannot find an address to advertise ({exc}); set --cluster.advertise-address") from None


def scrape_progress(controller: Controller) -> Callable[[float], tuple[int, int]]:
    """(on time, due) over every prometheus.scrape's targets, for the progress the agent gossips.

    Two readings, and the worse one is published. Ticks: over the last few calls, the scrapes
    completed against the ticks the loops had to skip because the event loop reached them late
    or the previous scrape of the target ran past them (due versus started: a failing or slow
    target still starts its scrapes, so it is not counted against the agent; two calls, so one
    pause of the loop never spans three publications); this sees a
    starved loop within seconds at any interval. Level: a target that has been scraped is late
    when its last scrape (or the end of the last stall, ``since``) is more than two intervals
    and a timeout ago; this sees a scrape that started and never ends.
    """
    skipped: dict[int, int] = {}  # id(pool) -> late and overrun skips so far
    seen: dict[int, float] = {}  # id(target status) -> its last scrape time at the last call
    window: deque[tuple[int, int]] = deque(maxlen=TICK_WINDOW)  # (completed, skipped) per call
    last_since = [0.0]
    after_stall = [0]

    def measure(since: float) -> tuple[int, int]:
        now = time.time()
        on_time = due = completed = missed = 0
        now_seen: dict[int, float] = {}
        now_skipped: dict[int, int] = {}
        for node in controller.nodes():
            component = node.component
            if not isinstance(component, PrometheusScrape):
                continue
            pool = component.pool
            count = pool.skipped[SKIP_LATE] + pool.skipped[SKIP_OVERRUN]
            now_skipped[id(pool)] = count
            missed += max(0, count - skipped.get(id(pool), count))
            for t in pool.targets():
                if t.last_scrape <= 0:
                    continue
                due += 1
                on_time += now - max(t.last_scrape, since) <= 2 * t.interval + t.timeout
                now_seen[id(t)] = t.last_scrape
                completed += t.last_scrape > seen.get(id(t), t.last_scrape)
        seen.clear()
        seen.update(now_seen)
        skipped.clear()
        skipped.update(now_skipped)
        # ``since`` moves (beyond the jitter of reading two clocks) only in or at the end of a
        # stall's hold-down: the ticks the stall made the loops skip are the stall's, not lateness.
        if abs(since - last_since[0]) > 0.5:
            last_since[0] = since
            window.clear()
            after_stall[0] = STALL_SKIPS
        elif after_stall[0]:
            after_stall[0] -= 1  # loops woken by the stall's end skip the ticks it covered
        else:
            window.append((completed, missed))
        done = sum(c for c, _ in window)
        ticks = done + sum(m for _, m in window)
        if ticks and (not due or done * due < on_time * ticks):
            return done, ticks
        return on_time, due

    return measure


def write_progress(controller: Controller) -> Callable[[], tuple[float, float]]:
    """The worst WAL fsync (seconds, one under way counts as it grows) and remote-write lag over
    every prometheus.remote_write, for the progress the agent gossips."""
    def measure() -> tuple[float, float]:
        fsync = lag = 0.0
        for node in controller.nodes():
            component = node.component
            if isinstance(component, PrometheusRemoteWrite):
                f, g = component.write_progress()
                fsync, lag = max(fsync, f), max(lag, g)
        return fsync, lag

    return measure


def build(args: argparse.Namespace) -> tuple[ClusterService, list[str]]:
    """The service the flags describe, and warnings (join addresses that did not resolve)."""
    # Deferred to here: the only place clustering is known to be on (see the note at the top).
    from agent.cluster import Settings
    from agent.cluster.joinaddrs import resolve
    from agent.cluster.keyfile import KeyFileError, read_keys
    from agent.cluster.service import ClusterService, Options

    listen_host, listen_port = parse_listen_addr(args.listen_addr)
    if listen_port == 0:
        raise FlagError("--cluster.enabled needs a fixed --server.http.listen-addr port: gossip uses its number")
    settings_over, options_over = _tuning(args.cluster_tuning)
    rejoin = _seconds("rejoin-interval", args.cluster_rejoin_interval)
    keys: tuple[bytes, ...] = ()
    if args.cluster_gossip_key_file:
        try:
            keys = read_keys(args.cluster_gossip_key_file)
        except KeyFileError as exc:
            raise FlagError(f"--cluster.gossip-key-file: {exc}") from None
    try:
        settings = Settings(**{
            "name": args.cluster_node_name or socket.gethostname(),
            "bind_host": listen_host if listen_host not in ("", "::") else "0.0.0.0",
            "bind_port": listen_port,
            "advertise_host": _advertise_host(args, listen_host),
            "cluster_name": args.cluster_name,
            "keys": keys,
            "rejoin_interval": rejoin if rejoin > 0 else 1e9,  # 0: never
            **settings_over,
        })
    except ValueError as exc:
        raise FlagError(str(exc)) from None
    join, errors = resolve(args.cluster_join_addresses, listen_port)
    if args.cluster_max_join_peers < 0 or args.cluster_wait_for_size < 0:
        raise FlagError("--cluster.max-join-peers and --cluster.wait-for-size must not be negative")
    options = Options(
        join=tuple(join),
        max_join_peers=args.cluster_max_join_peers,
        wait_for_size=args.cluster_wait_for_size,
        wait_timeout=_seconds("wait-timeout", args.cluster_wait_timeout),
        # DNS names are looked up again at each rejoin: a headless Service's pods come and go.
        resolve_join=lambda: resolve(args.cluster_join_addresses, listen_port)[0],
        key_file=args.cluster_gossip_key_file,
        tls=peer_tls(args),
        **options_over,
    )
    return ClusterService(settings, options, registry=REGISTRY), errors
