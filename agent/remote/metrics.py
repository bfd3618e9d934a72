"""Remote-write self-metrics under Prometheus' names, per engine instance.

``RemoteMetrics`` creates the families in the registry a ``RemoteWrite`` is
given (a component's own registry: the runtime adds ``component_id`` when
``/metrics`` is collected), or in a private one, so tests and benchmarks
share no state. Each queue labels them with ``remote_name`` and ``url`` as
Prometheus does, and resolves its children once (``QueueMetrics``) so sends
do no label look-ups.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_Q = ["remote_name", "url"]
_P = "prometheus_remote_storage_"


class RemoteMetrics:
    """The families of one RemoteWrite, shared by its queues."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.samples_total = Counter(_P + "samples_total", "Total number of samples sent to remote storage.", _Q,
                                     registry=r)
        self.samples_failed = Counter(
            _P + "samples_failed_total",
            "Total number of samples which failed on send to remote storage, non-recoverable errors.", _Q,
            registry=r,
        )
        self.samples_retried = Counter(
            _P + "samples_retried_total",
            "Total number of samples which failed on send to remote storage but were retried.", _Q, registry=r,
        )
        self.samples_dropped = Counter(
            _P + "samples_dropped_total",
            "Total number of samples which were dropped before being sent to remote storage, by reason.",
            [*_Q, "reason"], registry=r,
        )
        self.samples_pending = Gauge(_P + "samples_pending", "The number of samples pending in the queues shards.",
                                     _Q, registry=r)
        self.shards = Gauge(_P + "shards", "The number of shards used for parallel sending to the remote storage.",
                            _Q, registry=r)
        self.shards_max = Gauge(_P + "shards_max", "The maximum number of shards that the queue is allowed to run.",
                                _Q, registry=r)
        self.shards_min = Gauge(_P + "shards_min", "The minimum number of shards that the queue is allowed to run.",
                                _Q, registry=r)
        self.shard_capacity = Gauge(_P + "shard_capacity", "The capacity of each shard of the queue.", _Q,
                                    registry=r)
        self.highest_timestamp = Gauge(
            _P + "highest_timestamp_in_seconds",
            "Highest timestamp that has come into the remote storage via the Appender interface, in seconds since "
            "epoch.",
            registry=r,
        )
        self.queue_highest_sent = Gauge(
            _P + "queue_highest_sent_timestamp_seconds",
            "Timestamp from a WAL sample, the highest timestamp successfully sent by this queue, in seconds since "
            "epoch.",
            _Q, registry=r,
        )
        self.sent_batch_duration = Histogram(
            _P + "sent_batch_duration_seconds",
            "Duration of send calls to the remote storage.",
            _Q,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60),
            registry=r,
        )
        self.bytes_total = Counter(
            _P + "bytes_total",
            "The total number of bytes of data (not metadata) sent by the queue after compression.", _Q, registry=r,
        )
        self.metadata_total = Counter(_P + "metadata_total", "Total number of metadata entries sent to remote storage.",
                                      _Q, registry=r)
        self.metadata_failed = Counter(
            _P + "metadata_failed_total",
            "Total number of metadata entries which failed on send to remote storage, non-recoverable errors.",
            _Q, registry=r,
        )
        self.histograms_total = Counter(_P + "histograms_total", "Total number of histograms sent to remote storage.",
                                        _Q, registry=r)
        self.histograms_dropped = Counter(
            _P + "histograms_dropped_total",
            "Total number of native histogram samples dropped before being sent to remote storage, by reason.",
            [*_Q, "reason"], registry=r,
        )
        self.exemplars_total = Counter(_P + "exemplars_total", "Total number of exemplars sent to remote storage.", _Q,
                                       registry=r)
        self.exemplars_dropped = Counter(
            _P + "exemplars_dropped_total",
            "Total number of exemplars dropped before being sent to remote storage, by reason.",
            [*_Q, "reason"], registry=r,
        )

        self.probes = Counter(  # Shoal's own
            "shoal_remote_storage_probes_total",
            "Empty write requests sent after a failure, before a batch, to learn whether the backend is back.",
            _Q, registry=r,
        )
        self.admission_share = Gauge(  # Shoal's own (agent/remote/admission.py)
            "shoal_remote_write_admission_share",
            "Share of scrape ticks the scrapes feeding this component are asked to make: 1 is all; "
            "below 1 the agent sheds load because remote write cannot keep up with the scrapes.",
            registry=r,
        )
        self.admission_share.set(1.0)
        self.shedding = Gauge(
            "shoal_remote_write_shedding",
            "1 while scrapes are skipped because remote write cannot send what they produce (the "
            "reason is in the component's debug info), else 0.",
            registry=r,
        )

    def queue(self, remote_name: str, url: str) -> QueueMetrics:
        return QueueMetrics(self, remote_name, url)


class QueueMetrics:
    """One queue's children of the families, resolved once; shards count through it."""

    def __init__(self, fams: RemoteMetrics, remote_name: str, url: str) -> None:
        lv = self._lv = (remote_name, url)
        self._fams = fams
        self.sent = fams.samples_total.labels(*lv)
        self.failed = fams.samples_failed.labels(*lv)
        self.retried = fams.samples_retried.labels(*lv)
        self.highest_sent = fams.queue_highest_sent.labels(*lv)
        self.duration = fams.sent_batch_duration.labels(*lv)
        self.bytes_sent = fams.bytes_total.labels(*lv)
        self.histograms = fams.histograms_total.labels(*lv)
        self.exemplars = fams.exemplars_total.labels(*lv)
        self.pending = fams.samples_pending.labels(*lv)
        self.metadata = fams.metadata_total.labels(*lv)
        self.metadata_failed = fams.metadata_failed.labels(*lv)
        self.shards = fams.shards.labels(*lv)
        self.shards_max = fams.shards_max.labels(*lv)
        self.shards_min = fams.shards_min.labels(*lv)
        self.shard_capacity = fams.shard_capacity.labels(*lv)
        self.probes = fams.probes.labels(*lv)
        self.busy_seconds = 0.0  # shard-seconds from taking a batch to its durable ack (shard tuning)

    def samples_dropped(self, reason: str, n: int) -> None:
        self._fams.samples_dropped.labels(*self._lv, reason).inc(n)

    def histograms_dropped(self, reason: str, n: int) -> None:
        self._fams.histograms_dropped.labels(*self._lv, reason).inc(n)

    def exemplars_dropped(self, reason: str, n: int) -> None:
        self._fams.exemplars_dropped.labels(*self._lv, reason).inc(n)
