"""A user-space relay that delays and drops the traffic between cluster agents.

The kernel here has no netem, so delay on the gossip link is made in user space:
each agent advertises the relay's address (``--cluster.advertise-address``; the
port is always the agent's listen port) and the relay forwards to the agent's
real listen address. UDP: each datagram is dropped with probability ``loss`` or
sent ``delay`` seconds later; replies come back through a socket per sender, so
an ack reaches the agent that pinged. TCP (push-pull over HTTP): every chunk is
delayed by ``delay`` each way, in order; no loss (TCP would retransmit it).
The relay runs on its own thread and event loop, so the harness stays free.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading


class _Upstream(asyncio.DatagramProtocol):
    """One sender's socket towards the agent: replies go back to that sender."""

    def __init__(self, relay: _UDPRelay, client: tuple[str, int]) -> None:
        self.relay, self.client = relay, client
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, _addr: tuple[str, int]) -> None:
        self.relay.later(self.relay.front_send, data, self.client)


class _UDPRelay(asyncio.DatagramProtocol):
    def __init__(self, target: tuple[str, int], delay: float, loss: float) -> None:
        self.target, self.delay, self.loss = target, delay, loss
        self.front: asyncio.DatagramTransport | None = None
        self.upstreams: dict[tuple[str, int], _Upstream] = {}
        self.sent = self.dropped = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.front = transport  # type: ignore[assignment]

    def later(self, send: object, data: bytes, addr: tuple[str, int]) -> None:
        if random.random() < self.loss:
            self.dropped += 1
            return
        self.sent += 1
        asyncio.get_running_loop().call_later(self.delay, send, data, addr)  # type: ignore[arg-type]

    def front_send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.front is not None and not self.front.is_closing():
            self.front.sendto(data, addr)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        up = self.upstreams.get(addr)
        if up is None:
            up = self.upstreams[addr] = _Upstream(self, addr)
            loop = asyncio.get_running_loop()
            host = self.front.get_extra_info("sockname")[0] if self.front else "127.0.0.1"
            loop.create_task(loop.create_datagram_endpoint(lambda: up, local_addr=(host, 0)))
        self.later(self._up_send, data, addr)

    def _up_send(self, data: bytes, client: tuple[str, int]) -> None:
        up = self.upstreams.get(client)
        if up is not None and up.transport is not None:
            up.transport.sendto(data, self.target)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy with every chunk ``delay`` late, in order (a queue drained by one writer)."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    async def drain() -> None:
        while True:
            due, chunk = await queue.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not chunk:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            writer.write(chunk)
            await writer.drain()

    task = loop.create_task(drain())
    try:
        while True:
            chunk = await reader.read(65536)
            queue.put_nowait((loop.time() + delay, chunk))
            if not chunk:
                break
        await task
    finally:
        task.cancel()


class Relay:
    """UDP and TCP relays from ``front`` hosts to agents' real addresses, on one thread."""

    def __init__(self, delay: float, loss: float) -> None:
        self.delay, self.loss = delay, loss
        self.loop = asyncio.new_event_loop()
        self.udp: list[_UDPRelay] = []
        self._servers: list[asyncio.Server] = []
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def add(self, front: tuple[str, int], target: tuple[str, int]) -> None:
        """Relay ``front`` (host, port) to ``target`` for both UDP and TCP."""
        asyncio.run_coroutine_threadsafe(self._add(front, target), self.loop).result(10)

    async def _add(self, front: tuple[str, int], target: tuple[str, int]) -> None:
        udp = _UDPRelay(target, self.delay, self.loss)
        await self.loop.create_datagram_endpoint(lambda: udp, local_addr=front)
        self.udp.append(udp)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await asyncio.open_connection(*target)
            except OSError:
                writer.close()
                return
            try:
                await asyncio.gather(_pipe(reader, up_writer, self.delay),
                                     _pipe(up_reader, writer, self.delay))
            except OSError:
                pass
            finally:
                writer.close()
                up_writer.close()

        self._servers.append(await asyncio.start_server(serve, *front))

    def counts(self) -> tuple[int, int]:
        """Datagrams relayed and dropped so far."""
        return sum(u.sent for u in self.udp), sum(u.dropped for u in self.udp)

    def close(self) -> None:
        for s in self._servers:
            self.loop.call_soon_threadsafe(s.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
