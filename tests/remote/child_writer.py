"""A real agent-like process for crash tests: appends numbered batches and sends them to a URL.

Usage: python -m tests.remote.child_writer WAL_DIR URL T0 FIRST [LAST]
Batch b holds 100 series at timestamp T0 + b*100 ms with value b; "b" is
printed after the batch is in the WAL. With LAST, it appends up to LAST,
waits until all is sent, stops cleanly and prints "done".
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from agent.remote import EndpointConfig, QueueConfig, RemoteWrite, WALOptions
from tests.remote.helpers import batch

SERIES = 100


async def main(argv: list[str]) -> None:
    directory, url, t0, first = Path(argv[0]), argv[1], int(argv[2]), int(argv[3])
    last = int(argv[4]) if len(argv) > 4 else None
    q = QueueConfig(min_shards=4, max_samples_per_send=500, batch_send_deadline=0.02,
                    min_backoff=0.01, max_backoff=0.2)
    rw = RemoteWrite(directory, [EndpointConfig(name="prom", url=url, queue=q)], {"agent": "crash"}, WALOptions())
    await rw.start()
    b = first
    while last is None or b <= last:
        rw.append(batch(SERIES, t0 + b * 100, float(b), job="crash"))
        print(b, flush=True)
        b += 1
        await asyncio.sleep(0.003)
    ok = await rw.flush(60)
    await rw.stop()
    print("done" if ok else "flush timed out", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
