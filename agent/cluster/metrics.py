"""The cluster's self-metrics, under Alloy's (ckit's) names where Alloy has one.

Created in the registry handed in (None: not registered anywhere), so a node's
series live and die with the node. Names without an Alloy equivalent are
prefixed ``shoal_cluster_``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ClusterMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry
        self.node_info = Gauge(
            "cluster_node_info", "Information about this node: its state.", ["state"], registry=r
        )
        self.peers = Gauge(
            "cluster_node_peers",
            "Members that are alive or suspect, by the state they announce.",
            ["state"],
            registry=r,
        )
        self.members = Gauge(
            "shoal_cluster_members",
            "Members known to this node, by liveness.",
            ["liveness"],
            registry=r,
        )
        self.health_score = Gauge(
            "cluster_node_gossip_health_score",
            "Lifeguard awareness score of this node (0 is healthy; higher stretches its probes).",
            registry=r,
        )
        self.proto_version = Gauge(
            "cluster_node_gossip_proto_version", "Gossip protocol version spoken.", registry=r
        )
        self.events = Counter(
            "cluster_node_gossip_received_events_total",
            "Membership events applied, by kind.",
            ["event"],
            registry=r,
        )
        self.observers = Gauge(
            "cluster_node_update_observers",
            "Registered observers of membership changes.",
            registry=r,
        )
        self.incarnation = Gauge(
            "shoal_cluster_node_incarnation", "This node's incarnation number.", registry=r
        )

        def transport(name: str, help_text: str) -> Counter:
            return Counter(f"cluster_transport_{name}_total", help_text, registry=r)

        self.rx_bytes = transport("rx_bytes", "Gossip packet bytes read.")
        self.rx_packets = transport("rx_packets", "Gossip packets read.")
        self.rx_failed = transport("rx_packets_failed", "Gossip packets that could not be used.")
        self.tx_bytes = transport("tx_bytes", "Gossip packet bytes written.")
        self.tx_packets = transport("tx_packets", "Gossip packets written (failed or otherwise).")
        self.tx_failed = transport("tx_packets_failed", "Gossip packets that failed to send.")
        self.stream_rx_bytes = transport("stream_rx_bytes", "Push-pull stream bytes read.")
        self.stream_rx_packets = transport("stream_rx_packets", "Push-pull messages read.")
        self.stream_rx_failed = transport(
            "stream_rx_packets_failed", "Push-pull messages that could not be read or used."
        )
        self.stream_tx_bytes = transport("stream_tx_bytes", "Push-pull stream bytes written.")
        self.stream_tx_packets = transport("stream_tx_packets", "Push-pull messages written.")
        self.stream_tx_failed = transport(
            "stream_tx_packets_failed", "Push-pull exchanges that failed."
        )
        self.dropped = Counter(
            "shoal_cluster_messages_dropped_total",
            "Packets, streams or messages dropped, by reason (malformed, invalid, version, "
            "cluster, unauthenticated, oversized, name_conflict).",
            ["reason"],
            registry=r,
        )
        self.ack_latency = Histogram(
            "shoal_cluster_probe_ack_seconds",
            "Time from a direct probe to its ack.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.key_reloads = Counter(
            "shoal_cluster_key_reloads_total",
            "Times the gossip key file was read again after it changed, by result (ok, error).",
            ["result"],
            registry=r,
        )
        self.tls_reloads = Counter(
            "shoal_cluster_tls_reloads_total",
            "Times the peer TLS files (--cluster.tls-*) were read again after one changed, "
            "by result (ok, error: the certificates in force were kept).",
            ["result"],
            registry=r,
        )
        self.target_set_mismatch = Gauge(
            "shoal_cluster_target_set_mismatch",
            "Live peers whose targets for this clustered component differ from this agent's "
            "(other keys, or the component missing there); 0 when every agent agrees.",
            ["component_id"],
            registry=r,
        )
        self.ramp_clamped = Counter(
            "shoal_cluster_ramp_switch_clamped_total",
            "Share switch times gossiped by a peer further ahead than ramp_ahead_max (a bad value "
            "or a clock far ahead), used as that far ahead instead.",
            registry=r,
        )
        self.proto_version.set(1)
