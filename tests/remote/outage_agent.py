"""One agent for the outage test: a RemoteWrite in its own process, appending like a scrape loop.

Usage: python -m tests.remote.outage_agent WAL_DIR URL JOB SERIES PERIOD
Every PERIOD seconds it appends one batch: SERIES counters of job JOB at the
current time, value = the batch number. A line "stop" on stdin ends the
appending; it then waits until everything is sent and prints one JSON line:
{"batches": N, "flushed": bool, "status": {...}}.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from agent.remote import EndpointConfig, QueueConfig, RemoteWrite, WALOptions
from tests.remote.helpers import batch


async def main(argv: list[str]) -> None:
    directory, url, job = Path(argv[0]), argv[1], argv[2]
    n_series, period = int(argv[3]), float(argv[4])
    q = QueueConfig(batch_send_deadline=period / 2, max_samples_per_send=2000)
    rw = RemoteWrite(directory, [EndpointConfig(name="prom", url=url, queue=q)], {"agent": job}, WALOptions())
    await rw.start()
    stop = asyncio.ensure_future(asyncio.to_thread(sys.stdin.readline))
    b = 0
    next_at = time.monotonic()
    while not stop.done():
        rw.append(batch(n_series, int(time.time() * 1000), float(b), job=job))
        b += 1
        next_at += period
        await asyncio.wait([stop], timeout=max(0.0, next_at - time.monotonic()))
    flushed = await rw.flush(120)
    status = rw.status()["endpoints"][0]
    await rw.stop()
    print(json.dumps({"batches": b, "flushed": flushed, "status": status}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
