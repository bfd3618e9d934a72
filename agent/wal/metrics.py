"""The WAL's self-metrics, under the names Prometheus' agent mode and TSDB WAL use.

Created once at import (prometheus-client refuses a second registration) and
labelled per WAL with ``component_id``, as Alloy labels component metrics.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_L = ["component_id"]

segment_current = Gauge(
    "prometheus_tsdb_wal_segment_current", "Write log segment index that TSDB is currently writing to.", _L
)
storage_size = Gauge("prometheus_tsdb_wal_storage_size_bytes", "Size of the write log directory.", _L)
corruptions = Counter(
    "prometheus_tsdb_wal_corruptions_total", "Total number of WAL corruptions (torn tails and bad records).", _L
)
agent_corruptions = Counter(
    "prometheus_agent_corruptions_total", "Total number of WAL corruptions found at replay.", _L
)
fsync_duration = Histogram(
    "prometheus_tsdb_wal_fsync_duration_seconds",
    "Duration of write log fsync.",
    _L,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
records = Counter(
    "prometheus_tsdb_wal_record_part_writes_total", "Total number of records written to the WAL.", _L
)
record_bytes = Counter(
    "prometheus_tsdb_wal_record_parts_bytes_written_total", "Total bytes of records written to the WAL.", _L
)
writes_failed = Counter("prometheus_tsdb_wal_writes_failed_total", "Total number of write log writes that failed.", _L)
truncations = Counter("prometheus_tsdb_wal_truncations_total", "Total number of write log truncations attempted.", _L)
truncations_failed = Counter(
    "prometheus_tsdb_wal_truncations_failed_total", "Total number of write log truncations that failed.", _L
)
checkpoint_creations = Counter(
    "prometheus_agent_checkpoint_creations_total", "Number of checkpoint creations attempted.", _L
)
active_series = Gauge("prometheus_agent_active_series", "Number of active series being tracked by the WAL.", _L)
samples_appended = Counter(
    "prometheus_agent_samples_appended_total", "Total number of samples appended to the WAL.", _L
)
samples_dropped = Counter(
    "prometheus_agent_samples_dropped_total",
    "Samples that never reached the WAL, by reason (disk full, I/O error, buffer before start full).",
    ["component_id", "reason"],
)
replay_duration = Gauge(
    "prometheus_agent_data_replay_duration_seconds", "Time taken to replay the data on disk.", _L
)
segments_dropped = Counter(
    "shoal_wal_segments_dropped_total",
    "WAL segments deleted before every endpoint had sent them, or to stay within a limit, by reason.",
    ["component_id", "reason"],
)
histograms_appended = Counter(
    "prometheus_agent_histograms_appended_total", "Total number of native histogram samples appended to the WAL.", _L
)
exemplars_appended = Counter(
    "prometheus_agent_exemplars_appended_total", "Total number of exemplars appended to the WAL.", _L
)
