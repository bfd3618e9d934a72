from __future__ import annotations

import time

from agent.labels import Labels
from agent.remote import EndpointConfig, QueueConfig
from agent.storage import SampleBatch


def series(i: int, job: str = "t") -> Labels:
    return (("__name__", "shoal_test_total"), ("i", str(i)), ("job", job))


def batch(n_series: int, ts: int, value: float, job: str = "t") -> SampleBatch:
    b = SampleBatch()
    for i in range(n_series):
        b.add(series(i, job), ts, value)
    return b


def now_ms() -> int:
    return int(time.time() * 1000)


def endpoint(url: str, **queue) -> EndpointConfig:
    q = QueueConfig(**{"batch_send_deadline": 0.05, "min_backoff": 0.01, "max_backoff": 0.1, **queue})
    return EndpointConfig(name="test", url=url, queue=q)
