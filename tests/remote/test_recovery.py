"""Issue 10's faults: a real Prometheus behind the fault proxy, and a backend that misbehaves.

Each test runs one RemoteWrite appending SERIES counters every PERIOD (value:
the append's number, so the count and the sum of every series in Prometheus
say whether a sample was lost or doubled), measures the steady request rate
from the proxy's log, breaks the backend in one way (flapping 503s, 429 with
and without Retry-After, a 400 for part of the traffic, 5 s per request),
then lets it recover. Asserted: every sample arrived (or, for the 400, was
counted as failed), Prometheus rejected nothing as out of order, and the
requests in the catch-up window stay within the promise (1.5x the steady
rate, plus the probes), computed from the proxy's request log: counts, not
timings. Windows are a few seconds each; the module runs in about a minute.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.remote import EndpointConfig, QueueConfig, RemoteWrite, WALOptions
from tests.faultproxy import FaultProxy
from tests.procs import prometheus, query
from tests.remote.helpers import batch
from tests.remote.test_prometheus import _write_errors

pytestmark = pytest.mark.integration

WRITE = "/api/v1/write"
SERIES = 50
PERIOD = 0.2  # one append, and when healthy one request, per period
WARMUP = 3.0  # the send rate learns the steady rate
STEADY = 3.0
CATCHUP = 6.0  # the window after the fault whose requests are counted
PROMISE = 1.5  # requests per second during catch-up, times steady (QueueConfig.catchup_requests)


@dataclass
class Env:
    prom_url: str
    proxy: FaultProxy
    tmp: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("recovery")
    with prometheus(tmp / "prom") as prom, FaultProxy(prom.url) as proxy:
        yield Env(prom.url, proxy, tmp)


@dataclass
class Run:
    appended: int  # appends, each of SERIES samples
    status: dict
    steady_rate: float  # requests per second before the fault
    catchup_requests: int  # requests in the CATCHUP seconds after the fault
    fault_requests: int  # requests while the fault was on
    flushed: bool


def run(env: Env, job: str, fault: Callable[[FaultProxy], Awaitable[None]]) -> Run:
    proxy = env.proxy

    async def main() -> Run:
        q = QueueConfig(batch_send_deadline=PERIOD / 2, min_backoff=0.05, max_backoff=1.0,
                        max_samples_per_send=SERIES)
        rw = RemoteWrite(env.tmp / job / "wal", [EndpointConfig(name=job, url=proxy.url + WRITE, queue=q)],
                         {}, WALOptions())
        await rw.start()
        n = 0
        stop = asyncio.Event()

        async def append() -> None:
            nonlocal n
            next_at = time.monotonic()
            while not stop.is_set():
                rw.append(batch(SERIES, int(time.time() * 1000), float(n), job=job))
                n += 1
                next_at += PERIOD
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

        task = asyncio.create_task(append())
        await asyncio.sleep(WARMUP)
        t0 = time.monotonic()
        await asyncio.sleep(STEADY)
        t1 = time.monotonic()
        await fault(proxy)
        proxy.clear()
        t2 = time.monotonic()
        await asyncio.sleep(CATCHUP)
        t3 = time.monotonic()
        stop.set()
        await task
        flushed = await rw.flush(30)
        status = rw.status()["endpoints"][0]
        await rw.stop()
        return Run(n, status, proxy.count(since=t0, until=t1, path=WRITE) / (t1 - t0),
                   proxy.count(since=t2, until=t3, path=WRITE), proxy.count(since=t1, until=t2, path=WRITE),
                   flushed)

    return asyncio.run(main())


def delivered(env: Env, job: str, n: int) -> tuple[list[float], list[float]]:
    """Per series: how many samples Prometheus holds and their sum."""
    at = time.time() + 1
    counts = query(env.prom_url, f'count_over_time(shoal_test_total{{job="{job}"}}[10m])', at=at)
    sums = query(env.prom_url, f'sum_over_time(shoal_test_total{{job="{job}"}}[10m])', at=at)
    assert len(counts) == SERIES
    return [float(c["value"][1]) for c in counts], [float(s["value"][1]) for s in sums]


def check_gentle(r: Run, probes_allowed: int = 3) -> None:
    assert r.steady_rate > 0
    limit = PROMISE * r.steady_rate * CATCHUP + probes_allowed
    print(f"steady {r.steady_rate:.2f} req/s; catch-up window {r.catchup_requests} requests "
          f"(promise <= {limit:.0f}); during the fault {r.fault_requests}; send_rate {r.status['send_rate']}")
    assert r.catchup_requests <= limit, (r.catchup_requests, r.steady_rate)


def check_all_in_order(env: Env, job: str, r: Run) -> None:
    assert r.flushed
    counts, sums = delivered(env, job, r.appended)
    n = r.appended
    assert set(counts) == {float(n)} and set(sums) == {n * (n - 1) / 2}
    assert r.status["samples_failed"] == 0 and not r.status["samples_dropped"]


def no_rejections(env: Env) -> None:
    errors = _write_errors(env.prom_url)
    assert errors.get("out_of_order", 0) == 0, errors


def check(env: Env, job: str, r: Run) -> None:
    """Nothing lost or out of order, and a catch-up within the request-rate promise."""
    check_all_in_order(env, job, r)
    check_gentle(r)
    no_rejections(env)


def test_flapping_backend(env: Env):
    async def flap(proxy: FaultProxy) -> None:
        for _ in range(4):  # down 1.5 s, up 1.5 s
            proxy.fail(503, duration=1.5, path=WRITE)
            await asyncio.sleep(3.0)

    r = run(env, "flap", flap)
    check(env, "flap", r)
    assert r.status["send_rate"]["probes"] >= 1


def test_429_with_and_without_retry_after(env: Env):
    async def limit(proxy: FaultProxy) -> None:
        proxy.fail(429, duration=2.5, path=WRITE, body="rate limited")
        await asyncio.sleep(2.5)
        t = time.monotonic()
        proxy.fail(429, duration=3.0, path=WRITE, retry_after=2, body="rate limited")
        await asyncio.sleep(3.0)
        # Retry-After 2 s holds every request of the endpoint: at most two 429s in 3 s, and a probe
        # or two between them (each answered 429, each held again).
        assert proxy.count(since=t, path=WRITE) <= 4

    r = run(env, "limit", limit)
    check(env, "limit", r)


def test_a_400_for_part_of_the_traffic(env: Env):
    async def reject(proxy: FaultProxy) -> None:
        proxy.fail(400, count=1, path=WRITE, body="out of bounds: sample for one series is too old")
        await asyncio.sleep(1.0)

    r = run(env, "part", reject)
    assert r.flushed
    failed = r.status["samples_failed"]
    assert 0 < failed <= SERIES  # one steady batch refused for good, counted
    counts, sums = delivered(env, "part", r.appended)
    assert sum(counts) == r.appended * SERIES - failed  # everything else arrived, once
    assert all(c in (r.appended, r.appended - 1) for c in counts)
    no_rejections(env)


def test_a_slow_backend(env: Env):
    async def slow(proxy: FaultProxy) -> None:
        proxy.delay(5.0, duration=5.5, path=WRITE)
        await asyncio.sleep(5.5)

    r = run(env, "slow", slow)
    check(env, "slow", r)
