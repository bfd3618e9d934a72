"""Settings of remote write, with Alloy's argument names and defaults.

``prometheus.remote_write`` decodes its ``endpoint``, ``queue_config`` and
``wal`` blocks into these; durations are seconds. Credentials live in
``http`` and ``headers``, which are kept out of ``repr``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from agent.httpconfig import HTTPClientConfig, OAuth2Config


@dataclass(slots=True)
class QueueConfig:
    capacity: int = 10000  # samples buffered per shard before the WAL reader waits
    max_shards: int = 50
    min_shards: int = 1
    max_samples_per_send: int = 2000
    batch_send_deadline: float = 5.0
    min_backoff: float = 0.03
    max_backoff: float = 5.0
    retry_on_http_429: bool = True
    sample_age_limit: float = 0.0  # 0: no limit
    # Not an Alloy argument: how often the shard count is reconsidered (Prometheus: 10 s).
    shard_update_interval: float = 10.0
    # Shoal's own (issue 10), for the catch-up after a failure: requests per second at
    # most this multiple of the steady rate, samples per second at most ``catchup_samples``
    # times the steady rate, and batches up to ``catchup_batch`` times max_samples_per_send
    # (several samples per series, in timestamp order).
    catchup_requests: float = 1.5
    catchup_samples: float = 3.0
    catchup_batch: int = 4


@dataclass(slots=True)
class MetadataConfig:
    """Alloy's ``metadata_config``: how Remote-Write 1.0 sends metric metadata (2.0 sends it per series)."""

    send: bool = True
    send_interval: float = 60.0
    max_samples_per_send: int = 2000


@dataclass(slots=True)
class EndpointConfig:
    name: str = ""
    url: str = ""
    remote_timeout: float = 30.0
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    http: HTTPClientConfig = field(default_factory=HTTPClientConfig, repr=False)
    oauth2: OAuth2Config | None = field(default=None, repr=False)
    send_exemplars: bool = True
    send_native_histograms: bool = False
    protobuf_message: str = "prometheus.WriteRequest"  # or "io.prometheus.write.v2.Request"
    write_relabel_rules: list[Any] = field(default_factory=list)  # agent.relabel.Rule
    queue: QueueConfig = field(default_factory=QueueConfig)
    metadata: MetadataConfig = field(default_factory=MetadataConfig)

    def key(self) -> str:
        """Identity of the endpoint's queue and durable position: its name, else a hash of its URL.

        The same key across a reload means "the same endpoint, maybe changed";
        it keeps its position.
        """
        if self.name:
            return self.name
        return hashlib.sha256(self.url.encode()).hexdigest()[:6]


@dataclass(slots=True)
class WALOptions:
    truncate_frequency: float = 7200.0
    min_keepalive_time: float = 300.0
    max_keepalive_time: float = 28800.0
    # Not in Alloy (which has no disk limit): the most the WAL directory may hold, in
    # bytes; 0 means no budget. Beyond it the oldest segments are deleted, sent or not,
    # and what endpoints lose is counted as dropped, reason "disk_budget".
    disk_budget_bytes: int = 0


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(?:([kmgtp])(i?)|)(b?)\s*", re.IGNORECASE)


def parse_bytes(v: int | float | str) -> int:
    """A byte count from a number or a size string: "512MiB", "512Mi", "2GB", "1.5g", "4096".

    Multiples are binary (KB = KiB = 1024), as Prometheus reads its size flags.
    """
    if isinstance(v, bool):
        raise ValueError(f"expected a size, got {v!r}")
    if isinstance(v, int | float):
        if v < 0 or v != int(v):
            raise ValueError(f"expected a whole, non-negative number of bytes, got {v}")
        return int(v)
    m = _SIZE.fullmatch(v)
    if m is None:
        raise ValueError(f'"{v}" is not a size (a number of bytes, or e.g. "512MiB", "2GB")')
    n = float(m.group(1)) * _UNITS[(m.group(2) or "").lower()]
    return int(n)
