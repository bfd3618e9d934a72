"""Engine metrics belong to the engine instance: its registry, Prometheus' names, no component_id."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from agent.remote import RemoteWrite, WALOptions
from tests.remote.helpers import batch, endpoint, now_ms
from tests.remote.receiver import Receiver


def test_two_engines_count_apart_in_their_own_registries(tmp_path: Path):
    shared = CollectorRegistry()

    async def main():
        rx = await Receiver().start()
        given = RemoteWrite(tmp_path / "a" / "wal", [endpoint(rx.url, max_samples_per_send=7)], {}, WALOptions(),
                            registry=shared)
        private = RemoteWrite(tmp_path / "b" / "wal", [endpoint(rx.url)], {}, WALOptions())
        await given.start()
        await private.start()
        t0 = now_ms()
        for b in range(3):
            given.append(batch(10, t0 + b * 1000, float(b)))
        private.append(batch(4, t0, 1.0))
        assert await given.flush() and await private.flush()
        await given.stop()
        await private.stop()
        await rx.stop()
        return given, private, rx.url

    given, private, url = asyncio.run(main())
    assert given.registry is shared and private.registry is not shared
    q = {"remote_name": "test", "url": url}
    assert shared.get_sample_value("prometheus_remote_storage_samples_total", q) == 30
    assert shared.get_sample_value("prometheus_agent_samples_appended_total") == 30
    assert shared.get_sample_value("prometheus_remote_storage_shards_max", q) == 50
    assert shared.get_sample_value("prometheus_remote_storage_highest_timestamp_in_seconds") > 0
    assert private.registry.get_sample_value("prometheus_remote_storage_samples_total", q) == 4
    assert private.registry.get_sample_value("prometheus_agent_samples_appended_total") == 4
    text = generate_latest(shared).decode()
    assert "component_id" not in text  # the runtime adds it when /metrics is collected
    assert "prometheus_tsdb_wal_fsync_duration_seconds_count" in text


def test_drops_and_failures_are_counted_by_reason_in_the_engine_registry(tmp_path: Path):
    async def main():
        rx = await Receiver(lambda _req: (400, {}, b"bad")).start()
        rw = RemoteWrite(tmp_path / "wal", [endpoint(rx.url, sample_age_limit=60.0)], {}, WALOptions())
        await rw.start()
        rw.append(batch(3, now_ms() - 3_600_000, 1.0))  # an hour old: past sample_age_limit
        rw.append(batch(5, now_ms(), 1.0))  # refused for good by the backend
        assert await rw.flush()
        await rw.stop()
        await rx.stop()
        return rw, rx.url

    rw, url = asyncio.run(main())
    q = {"remote_name": "test", "url": url}
    reg = rw.registry
    assert reg.get_sample_value("prometheus_remote_storage_samples_dropped_total", {**q, "reason": "too_old"}) == 3
    assert reg.get_sample_value("prometheus_remote_storage_samples_failed_total", q) == 5
    assert reg.get_sample_value("prometheus_remote_storage_samples_total", q) == 0
