"""The WAL's self-metrics, under the names Prometheus' agent mode and TSDB WAL use, per WAL.

``WALMetrics`` creates them in the registry the WAL is given (a component's
own registry: the runtime adds ``component_id`` when ``/metrics`` is
collected), or in a private one, so tests and benchmarks share no state.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class WALMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.segment_current = Gauge(
            "prometheus_tsdb_wal_segment_current", "Write log segment index that TSDB is currently writing to.",
            registry=r,
        )
        self.storage_size = Gauge("prometheus_tsdb_wal_storage_size_bytes", "Size of the write log directory.",
                                  registry=r)
        self.corruptions = Counter(
            "prometheus_tsdb_wal_corruptions_total", "Total number of WAL corruptions (torn tails and bad records).",
            registry=r,
        )
        self.agent_corruptions = Counter(
            "prometheus_agent_corruptions_total", "Total number of WAL corruptions found at replay.", registry=r
        )
        self.fsync_duration = Histogram(
            "prometheus_tsdb_wal_fsync_duration_seconds",
            "Duration of write log fsync.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.records = Counter(
            "prometheus_tsdb_wal_record_part_writes_total", "Total number of records written to the WAL.", registry=r
        )
        self.record_bytes = Counter(
            "prometheus_tsdb_wal_record_parts_bytes_written_total", "Total bytes of records written to the WAL.",
            registry=r,
        )
        self.writes_failed = Counter("prometheus_tsdb_wal_writes_failed_total",
                                     "Total number of write log writes that failed.", registry=r)
        self.truncations = Counter("prometheus_tsdb_wal_truncations_total",
                                   "Total number of write log truncations attempted.", registry=r)
        self.truncations_failed = Counter(
            "prometheus_tsdb_wal_truncations_failed_total", "Total number of write log truncations that failed.",
            registry=r,
        )
        self.checkpoint_creations = Counter(
            "prometheus_agent_checkpoint_creations_total", "Number of checkpoint creations attempted.", registry=r
        )
        self.active_series = Gauge("prometheus_agent_active_series",
                                   "Number of active series being tracked by the WAL.", registry=r)
        self.samples_appended = Counter(
            "prometheus_agent_samples_appended_total", "Total number of samples appended to the WAL.", registry=r
        )
        self.samples_dropped = Counter(
            "prometheus_agent_samples_dropped_total",
            "Samples that never reached the WAL, by reason (disk full, I/O error, buffer before start full).",
            ["reason"], registry=r,
        )
        self.replay_duration = Gauge(
            "prometheus_agent_data_replay_duration_seconds", "Time taken to replay the data on disk.", registry=r
        )
        self.segments_dropped = Counter(
            "shoal_wal_segments_dropped_total",
            "WAL segments deleted before every endpoint had sent them, or to stay within a limit, by reason.",
            ["reason"], registry=r,
        )
        self.histograms_appended = Counter(
            "prometheus_agent_histograms_appended_total",
            "Total number of native histogram samples appended to the WAL.", registry=r,
        )
        self.exemplars_appended = Counter(
            "prometheus_agent_exemplars_appended_total", "Total number of exemplars appended to the WAL.", registry=r
        )
