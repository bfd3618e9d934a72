"""How long a remote-write send is past its last handoff check: the window a stall cannot recall.

A shard filters a batch against the handoff markers right before it sends
(``Dispatcher.settle``, after waiting for any loop stall to be settled). A stall
that begins after that check and before the request's bytes are in the kernel
sends the batch after the stall, unfiltered: if the stall let another agent
take a target over, Prometheus refuses the request as out of order. This
measures that window on a real queue (one shard, so sends are in order): from
the check's return to the client's send call (encoding a filtered batch), to
the last byte of the body read by a receiver that answers at once (an upper
bound of "in the kernel": it adds a loopback hop and a loop turn), and to the
answer of a real Prometheus (``--prometheus``: its processing too), with the
sends per second that turn the window into the share of time a stall can land
in it.

    python -m loadtest.handoff_window [--seconds 20] [--rate 20000] [--series 20000] [--prometheus]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from agent.remote import EndpointConfig, QueueConfig, RemoteWrite, WALOptions
from agent.remote.client import WriteClient
from agent.remote.dispatch import Dispatcher
from agent.storage import SampleBatch
from tests import procs


def quantiles(xs: list[float]) -> str:
    if not xs:
        return "none"
    xs = sorted(xs)
    q = [xs[min(len(xs) - 1, int(p * len(xs)))] * 1000 for p in (0.5, 0.9, 0.99)]
    return f"p50 {q[0]:.2f} ms, p90 {q[1]:.2f} ms, p99 {q[2]:.2f} ms, max {xs[-1] * 1000:.2f} ms (n={len(xs)})"


class Instant:
    """An HTTP server that reads a request's body, notes when its last byte came, and answers 204."""

    def __init__(self) -> None:
        self.read: list[float] = []
        self.url = ""
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> Instant:
        self._server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                self.read.append(time.monotonic())
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


async def run(seconds: float, rate: int, series: int, prom_url: str | None, wal: Path) -> dict[str, Any]:
    checked: dict[Any, float] = {}  # task -> when its last handoff check returned
    checks: list[float] = []
    to_call: list[float] = []
    to_answer: list[float] = []
    instant = await Instant().start() if prom_url is None else None
    settle, send = Dispatcher.settle, WriteClient.send

    async def timed_settle(self: Dispatcher, batch: Any) -> Any:
        out = await settle(self, batch)
        checked[asyncio.current_task()] = now = time.monotonic()
        checks.append(now)
        return out

    async def timed_send(self: WriteClient, body: bytes, attempt: int = 0, proto: str = "") -> Any:
        began = checked.pop(asyncio.current_task(), None)
        if began is not None:
            to_call.append(time.monotonic() - began)
        result = await send(self, body, attempt, proto) if proto else await send(self, body, attempt)
        if began is not None:
            to_answer.append(time.monotonic() - began)
        return result

    Dispatcher.settle = timed_settle  # type: ignore[method-assign]
    WriteClient.send = timed_send  # type: ignore[method-assign]
    try:
        base = prom_url if prom_url is not None else instant.url  # type: ignore[union-attr]
        ep = EndpointConfig(name="w", url=base + "/api/v1/write", queue=QueueConfig(max_shards=1))
        rw = RemoteWrite(wal, [ep], {}, WALOptions())
        await rw.start()
        labels = [(("__name__", "window_test"), ("i", str(i)), ("job", "w")) for i in range(series)]
        per_tick = max(1, rate // 10)
        began = time.monotonic()
        k = 0
        while time.monotonic() - began < seconds:
            b = SampleBatch()
            ts = int(time.time() * 1000)
            for j in range(per_tick):
                b.add(labels[(k + j) % series], ts, float(k))
            k += per_tick
            rw.append(b)
            await asyncio.sleep(0.1)
        await rw.flush(30)
        shards = len(next(iter(rw.queues.values())).shards)
        await rw.stop()
    finally:
        Dispatcher.settle = settle  # type: ignore[method-assign]
        WriteClient.send = send  # type: ignore[method-assign]
        if instant is not None:
            await instant.stop()
    to_read = [r - c for c, r in zip(checks, instant.read, strict=False)] if instant is not None else []
    return {"sends": len(to_answer), "shards": shards, "seconds": seconds,
            "to_call": to_call, "to_read": to_read, "to_answer": to_answer}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--rate", type=int, default=20000, help="samples per second appended")
    p.add_argument("--series", type=int, default=20000)
    p.add_argument("--prometheus", action="store_true", help="write to a real Prometheus")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if a.prometheus:
            with procs.prometheus(Path(tmp) / "prom") as prom:
                r = asyncio.run(run(a.seconds, a.rate, a.series, prom.url, Path(tmp) / "wal"))
        else:
            r = asyncio.run(run(a.seconds, a.rate, a.series, None, Path(tmp) / "wal"))
    per_shard = r["sends"] / r["shards"] / r["seconds"]
    window = r["to_read"] or r["to_answer"]
    print(f"load average {os.getloadavg()[0]:.1f}; {a.rate} samples/s over {a.series} series, {a.seconds:g} s")
    print(f"check -> send call:  {quantiles(r['to_call'])}")
    if r["to_read"]:
        print(f"check -> body read:  {quantiles(r['to_read'])}")
    print(f"check -> answer:     {quantiles(r['to_answer'])}")
    print(f"{r['sends']} sends on {r['shards']} shard(s): {per_shard:.1f} sends/s per shard; "
          f"share of time past the check (mean window x sends/s): "
          f"{100 * per_shard * sum(window) / max(1, len(window)):.2f} %")


if __name__ == "__main__":
    main()
