"""The node's own UDP and TCP sockets, served by the protocol thread's event loop.

Probes and gossip go by UDP, one sealed frame per datagram, at most
``MAX_PACKET`` bytes; push-pull goes by TCP, one length-prefixed sealed frame
each way, or through a ``Dialer`` and ``serve_frame`` when another server (the
agent's HTTP port, which our TCP listener could not share) carries it. Everything received is opened and decoded here, so the protocol only
ever sees validated messages; what fails is counted by reason and logged at most
once per reason every ``LOG_EVERY`` seconds. ``allow`` is a seam for tests: a
predicate on the peer's host:port that drops traffic to make a partition.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agent.cluster.keyring import Keyring
from agent.cluster.member import join_addr, split_addr
from agent.cluster.messages import BadMessage, Message, PushPull, decode_packet, decode_push_pull
from agent.cluster.metrics import ClusterMetrics

MAX_PACKET = 1400  # bytes of one datagram we send; more than this received is "oversized"
MAX_RECEIVE = 1500
MAX_STREAM = 1 << 20  # one push-pull frame
LOG_EVERY = 10.0

# Carries one sealed push-pull frame to a peer's host:port and returns its sealed answer;
# runs on the protocol thread's loop. Lets push-pull ride on another server (the agent's
# HTTP port) instead of our own TCP listener.
Dialer = Callable[[str, bytes], Awaitable[bytes]]


def bind_pair(host: str, port: int, with_tcp: bool) -> tuple[socket.socket, socket.socket | None]:
    """A UDP and (if asked) a TCP socket on the same port number (a free one when port is 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last: OSError | None = None
    for _ in range(20):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = socket.socket(family, socket.SOCK_STREAM) if with_tcp else None
        try:
            udp.bind((host, port))
            udp.setblocking(False)
            if tcp is not None:
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind((host, udp.getsockname()[1]))
                tcp.listen(64)
                tcp.setblocking(False)
            return udp, tcp
        except OSError as e:
            udp.close()
            if tcp is not None:
                tcp.close()
            last = e
            if port:
                break
    raise OSError(f"cannot bind gossip sockets on {host}:{port}: {last}")


class _RateLimitedLog:
    def __init__(self, log: Any) -> None:
        self.log = log
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, reason: str, detail: str, peer: str) -> None:
        now = time.monotonic()
        if now - self._last.get(reason, -LOG_EVERY) < LOG_EVERY:
            self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
            return
        self._last[reason] = now
        self.log.warning(
            "dropped gossip",
            reason=reason,
            detail=detail,
            peer=peer,
            suppressed_since_last=self._suppressed.pop(reason, 0),
        )


class Transport(asyncio.DatagramProtocol):
    def __init__(
        self,
        cluster: str,
        local_host: str,
        keyring: Keyring,
        metrics: ClusterMetrics,
        log: Any,
        on_packet: Callable[[list[Message], str], None],
        on_push_pull: Callable[[PushPull, str], Awaitable[bytes]],
        dialer: Dialer | None = None,
    ) -> None:
        self._cluster = cluster
        self._local_host = local_host  # push-pull connects from our own address, as UDP does
        self._keyring = keyring
        self._m = metrics
        self._on_packet = on_packet
        self._on_push_pull = on_push_pull
        self._dialer = dialer
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.AbstractServer | None = None
        self.drop_log = _RateLimitedLog(log)
        self.allow: Callable[[str], bool] | None = None  # test seam: False drops traffic

    async def start(self, udp: socket.socket, tcp: socket.socket | None) -> None:
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(lambda: self, sock=udp)
        if tcp is not None:
            self._server = await asyncio.start_server(self._serve_stream, sock=tcp)

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def drop(self, reason: str, detail: str, peer: str) -> None:
        self._m.dropped.labels(reason).inc()
        self.drop_log(reason, detail, peer)

    def _allowed(self, peer: str) -> bool:
        return self.allow is None or self.allow(peer)

    # -- UDP --

    def send(self, addr: str, body: bytes) -> None:
        if self._udp is None or self._udp.is_closing() or not self._allowed(addr):
            return
        frame = self._keyring.seal(body)
        self._m.tx_packets.inc()
        self._m.tx_bytes.inc(len(frame))
        try:
            self._udp.sendto(frame, split_addr(addr))
        except (OSError, ValueError):
            self._m.tx_failed.inc()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        peer = join_addr(addr[0], addr[1])
        if not self._allowed(peer):
            return
        self._m.rx_packets.inc()
        self._m.rx_bytes.inc(len(data))
        try:
            if len(data) > MAX_RECEIVE:
                raise BadMessage("oversized", f"{len(data)} byte datagram")
            messages = decode_packet(self._keyring.open(data), self._cluster)
        except BadMessage as e:
            self._m.rx_failed.inc()
            self.drop(e.reason, e.detail, peer)
            return
        except Exception as e:  # the protobuf runtime may raise anything on hostile bytes
            self._m.rx_failed.inc()
            self.drop("malformed", f"{type(e).__name__}: {e}", peer)
            return
        try:
            self._on_packet(messages, peer)
        except Exception:  # a protocol bug must not stop the receiving side
            self.drop_log.log.exception("cluster protocol error", peer=peer)

    def error_received(self, exc: Exception) -> None:
        self._m.tx_failed.inc()  # ICMP unreachable from an earlier send

    # -- push-pull: our TCP listener, or frames carried by someone else (the dialer seam) --

    async def serve_frame(self, frame: bytes, peer: str) -> bytes:
        """Answer one sealed push-pull frame with ours; raises BadMessage, counted and logged."""
        request = self._open_frame(frame, peer)
        answer = self._keyring.seal(await self._on_push_pull(request, peer))
        self._m.stream_tx_packets.inc()
        self._m.stream_tx_bytes.inc(len(answer))
        return answer

    def _open_frame(self, frame: bytes, peer: str) -> PushPull:
        """A received push-pull frame (request or answer), opened and validated."""
        if len(frame) > MAX_STREAM:
            raise self._refuse("oversized", f"{len(frame)} byte push-pull frame", peer)
        self._m.stream_rx_packets.inc()
        self._m.stream_rx_bytes.inc(len(frame))
        try:
            return decode_push_pull(self._keyring.open(frame), self._cluster)
        except BadMessage as e:
            raise self._refuse(e.reason, e.detail, peer) from None
        except Exception as e:  # the protobuf runtime may raise anything on hostile bytes
            raise self._refuse("malformed", f"push-pull: {type(e).__name__}: {e}", peer) from None

    async def _serve_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peername = writer.get_extra_info("peername") or ("?", 0)
        peer = join_addr(peername[0], peername[1])
        try:
            if not self._allowed(peer):
                return
            async with asyncio.timeout(5.0):
                (size,) = struct.unpack(">I", await reader.readexactly(4))
                if size > MAX_STREAM:
                    raise self._refuse("oversized", f"{size} byte push-pull frame", peer)
                answer = await self.serve_frame(await reader.readexactly(size), peer)
                writer.write(struct.pack(">I", len(answer)) + answer)
                await writer.drain()
        except BadMessage:
            pass  # counted and logged where it was raised
        except Exception as e:  # a hostile or broken peer must never take the server down
            self._m.stream_rx_failed.inc()
            self.drop("malformed", f"push-pull: {type(e).__name__}: {e}", peer)
        finally:
            writer.close()

    async def exchange(self, addr: str, body: bytes, timeout: float) -> PushPull:
        """Send our push-pull to ``addr`` and return its validated answer (raises on failure)."""
        if not self._allowed(addr):
            raise ConnectionRefusedError(f"{addr} is cut off by the test seam")
        frame = self._keyring.seal(body)
        writer = None
        try:
            async with asyncio.timeout(timeout):
                if self._dialer is not None:
                    self._count_tx(len(frame))
                    return self._open_frame(await self._dialer(addr, frame), addr)
                host, port = split_addr(addr)
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=(self._local_host, 0)
                )
                writer.write(struct.pack(">I", len(frame)) + frame)
                await writer.drain()
                self._count_tx(4 + len(frame))
                (size,) = struct.unpack(">I", await reader.readexactly(4))
                if size > MAX_STREAM:
                    raise self._refuse("oversized", f"{size} byte push-pull answer", addr)
                return self._open_frame(await reader.readexactly(size), addr)
        except BadMessage:
            raise
        except Exception:
            self._m.stream_tx_failed.inc()
            raise
        finally:
            if writer is not None:
                writer.close()

    def _refuse(self, reason: str, detail: str, peer: str) -> BadMessage:
        self._m.stream_rx_failed.inc()
        self.drop(reason, detail, peer)
        return BadMessage(reason, detail)

    def _count_tx(self, size: int) -> None:
        self._m.stream_tx_packets.inc()
        self._m.stream_tx_bytes.inc(size)
