"""A small real HTTP server that receives remote-write requests, for narrow edge cases.

Runs on the test's event loop on a free loopback port. A ``responder`` decides
each answer (status, headers, body) so a test can script 500s, 429s with
Retry-After, or a 400; accepted requests are decoded with the protobuf library
and kept in arrival order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.protobuf.prompb import (
    RequestV2,
    WriteRequest,
    decode_v2,
    decode_write_request,
    decompress,
)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Answer = tuple[int, dict[str, str], bytes]


def ok(_req: Request) -> Answer:
    return 204, {}, b""


@dataclass
class Receiver:
    responder: Callable[[Request], Answer] = ok
    requests: list[Request] = field(default_factory=list)
    accepted: list[tuple[tuple[tuple[str, str], ...], int, float]] = field(default_factory=list)
    url: str = ""
    delay: float = 0.0  # seconds before each answer: a slow backend
    speaks_v2: bool = False  # decode 2.0 bodies (by Content-Type) and answer the *-Written headers
    metadata: list[tuple[str, int, str, str]] = field(default_factory=list)  # 1.0 metadata received
    v2_metadata: dict[tuple[tuple[str, str], ...], dict] = field(default_factory=dict)
    created: dict[tuple[tuple[str, str], ...], int] = field(default_factory=dict)
    v2_requests: list = field(default_factory=list)  # accepted 2.0 requests, decoded (RequestV2)
    _server: asyncio.base_events.Server | None = None

    async def start(self, ssl: Any = None) -> Receiver:
        """Listen on a free loopback port; over TLS with ``ssl`` (an ``ssl.SSLContext``)."""
        self._server = await asyncio.start_server(self._conn, "127.0.0.1", 0, ssl=ssl)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"{'https' if ssl is not None else 'http'}://127.0.0.1:{port}/api/v1/write"
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                req = Request(method, path, headers, body)
                self.requests.append(req)
                if self.delay:
                    await asyncio.sleep(self.delay)
                status, rh, rb = self.responder(req)
                v2 = "io.prometheus.write.v2.Request" in headers.get("content-type", "")
                if not path.endswith("/write"):  # another endpoint a test serves (a token URL): not decoded
                    status = -status
                if 200 <= status < 300 and v2 and self.speaks_v2:
                    try:
                        d2 = decode_v2(body)
                    except Exception as exc:  # noqa: BLE001 - a bad body is a 400, as a backend says
                        status, rh, rb = 400, {}, f"cannot decode: {exc}".encode()
                        d2 = []
                    n = 0
                    for labels, samples, md, created in d2:
                        if md:
                            self.v2_metadata[labels] = md
                        if created:
                            self.created[labels] = created
                        for ts, v in samples:
                            self.accepted.append((labels, ts, v))
                            n += 1
                    nh = ne = 0
                    if status < 300:
                        r2 = RequestV2()
                        r2.ParseFromString(decompress(body))
                        self.v2_requests.append(r2)
                        nh = sum(len(ts.histograms) for ts in r2.timeseries)
                        ne = sum(len(ts.exemplars) for ts in r2.timeseries)
                        rh = {**rh, "X-Prometheus-Remote-Write-Samples-Written": str(n),
                              "X-Prometheus-Remote-Write-Histograms-Written": str(nh),
                              "X-Prometheus-Remote-Write-Exemplars-Written": str(ne)}
                elif 200 <= status < 300 and v2:
                    pass  # a 1.0-only receiver that ignores Content-Type: reads nothing it knows
                elif 200 <= status < 300:
                    try:
                        decoded = decode_write_request(body)
                        req = WriteRequest()
                        req.ParseFromString(decompress(body))
                        for md in req.metadata:
                            self.metadata.append((md.metric_family_name, md.type, md.help, md.unit))
                    except Exception as exc:  # noqa: BLE001 - a bad body is a 400, as a backend says
                        status, rh, rb = 400, {}, f"cannot decode: {exc}".encode()
                        decoded = []
                    for labels, samples in decoded:
                        for ts, v in samples:
                            self.accepted.append((labels, ts, v))
                status = abs(status)
                out = [f"HTTP/1.1 {status} X", f"Content-Length: {len(rb)}"]
                out += [f"{k}: {v}" for k, v in rh.items()]
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode() + rb)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
