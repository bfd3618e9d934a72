"""Remote-write self-metrics under Prometheus' names.

Created once at import (prometheus-client refuses a second registration) and
labelled per queue with ``remote_name`` and ``url`` as Prometheus does, plus
``component_id`` as Alloy adds to component metrics.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_Q = ["component_id", "remote_name", "url"]
_P = "prometheus_remote_storage_"

samples_total = Counter(_P + "samples_total", "Total number of samples sent to remote storage.", _Q)
samples_failed = Counter(
    _P + "samples_failed_total", "Total number of samples which failed on send to remote storage, non-recoverable errors.", _Q
)
samples_retried = Counter(
    _P + "samples_retried_total", "Total number of samples which failed on send to remote storage but were retried.", _Q
)
samples_dropped = Counter(
    _P + "samples_dropped_total",
    "Total number of samples which were dropped before being sent to remote storage, by reason.",
    [*_Q, "reason"],
)
samples_pending = Gauge(_P + "samples_pending", "The number of samples pending in the queues shards.", _Q)
shards = Gauge(_P + "shards", "The number of shards used for parallel sending to the remote storage.", _Q)
shards_max = Gauge(_P + "shards_max", "The maximum number of shards that the queue is allowed to run.", _Q)
shards_min = Gauge(_P + "shards_min", "The minimum number of shards that the queue is allowed to run.", _Q)
shard_capacity = Gauge(_P + "shard_capacity", "The capacity of each shard of the queue.", _Q)
highest_timestamp = Gauge(
    _P + "highest_timestamp_in_seconds",
    "Highest timestamp that has come into the remote storage via the Appender interface, in seconds since epoch.",
    ["component_id"],
)
queue_highest_sent = Gauge(
    _P + "queue_highest_sent_timestamp_seconds",
    "Timestamp from a WAL sample, the highest timestamp successfully sent by this queue, in seconds since epoch.",
    _Q,
)
sent_batch_duration = Histogram(
    _P + "sent_batch_duration_seconds",
    "Duration of send calls to the remote storage.",
    _Q,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60),
)
bytes_total = Counter(
    _P + "bytes_total", "The total number of bytes of data (not metadata) sent by the queue after compression.", _Q
)
metadata_total = Counter(_P + "metadata_total", "Total number of metadata entries sent to remote storage.", _Q)
metadata_failed = Counter(
    _P + "metadata_failed_total",
    "Total number of metadata entries which failed on send to remote storage, non-recoverable errors.",
    _Q,
)
histograms_total = Counter(
    _P + "histograms_total", "Total number of histograms sent to remote storage.", _Q
)
histograms_dropped = Counter(
    _P + "histograms_dropped_total",
    "Total number of native histogram samples dropped before being sent to remote storage, by reason.",
    [*_Q, "reason"],
)
exemplars_total = Counter(_P + "exemplars_total", "Total number of exemplars sent to remote storage.", _Q)
exemplars_dropped = Counter(
    _P + "exemplars_dropped_total",
    "Total number of exemplars dropped before being sent to remote storage, by reason.",
    [*_Q, "reason"],
)
