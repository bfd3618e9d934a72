"""Push-pull carried by an HTTP server on the gossip port's number, through the dialer seam.

This is the shape the wiring needs: UDP gossip on the agent's HTTP port number,
and push-pull as a POST to the agent's HTTP server on that same number, since
our own TCP listener could not share it.
"""

from __future__ import annotations

import asyncio
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry

from agent.cluster import BadMessage, Node, Settings
from tests.cluster.helpers import FAST, all_alive, next_host, wait_until


def post(url: str, body: bytes) -> bytes:
    req = urllib.request.Request(url, data=body, method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.read()


async def dial(addr: str, frame: bytes) -> bytes:
    return await asyncio.to_thread(post, f"http://{addr}/cluster/push-pull", frame)


def serve(node: Node) -> ThreadingHTTPServer:
    host, port = node.address.rsplit(":", 1)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            try:
                answer = asyncio.run(node.serve_push_pull(body, self.client_address[0]))
            except BadMessage as e:
                self.send_error(400, e.reason)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, int(port)), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def carried() -> Iterator[tuple[list[Node], list[CollectorRegistry]]]:
    nodes, regs, servers = [], [], []
    for i in range(3):
        reg = CollectorRegistry()
        s = Settings(name=f"h{i}", bind_host=next_host(), cluster_name="test", **FAST)  # type: ignore[arg-type]
        node = Node(s, registry=reg, dialer=dial)
        node.start()
        servers.append(serve(node))
        nodes.append(node)
        regs.append(reg)
    yield nodes, regs
    for node, server in zip(nodes, servers, strict=True):
        node.stop(leave=False)
        server.shutdown()
        server.server_close()


def test_nodes_join_and_converge_over_http_push_pull(
    carried: tuple[list[Node], list[CollectorRegistry]],
) -> None:
    nodes, regs = carried
    for n in nodes[1:]:
        assert n.join([nodes[0].address]) == 1
    wait_until(lambda: all_alive(nodes), 15, "converged")
    assert (regs[0].get_sample_value("cluster_transport_stream_rx_packets_total") or 0) >= 2
    with pytest.raises(urllib.error.HTTPError) as e:
        post(f"http://{nodes[0].address}/cluster/push-pull", b"\x01\x00\xffgarbage")
    assert e.value.code == 400
    dropped = regs[0].get_sample_value(
        "shoal_cluster_messages_dropped_total", {"reason": "malformed"}
    )
    assert dropped == 1
