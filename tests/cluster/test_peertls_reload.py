"""Peer TLS files reloaded when they change on disk (certificates rotate; cert-manager renews them).

Real certificates (trustme), a real HTTPS server (the agent's ``HTTPServer``) and a
real TLS server that demands a client certificate, so both directions are seen:
the certificate the agent serves and the one it presents when it dials. Asserted:
after a rotation new connections use the new certificate (the server's context
switches at the handshake, the listening socket stays); a file that cannot be
used keeps the certificate in force, says why in the log without the file's
content, and is counted; then, with real agents, a rotation of every agent to
another CA lets an agent that has only the new CA join without any restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import time
from pathlib import Path

import httpx
import pytest
import structlog
import trustme
from cryptography import x509
from prometheus_client import CollectorRegistry, Counter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agent.cluster.peertls import PeerTLS, ReloadingTLS
from agent.cluster.service import PUSH_PULL_PATH, HTTPDialer
from agent.server.http import HTTPServer, bind
from tests import procs
from tests.cluster.test_agents_security import HOSTS, Secure, b64key

pytestmark = pytest.mark.timeout(180)

NAME = "shoal-peer"


def pems(ca: trustme.CA, cert: trustme.LeafCert) -> dict[str, bytes]:
    return {"ca.pem": ca.cert_pem.bytes(), "key.pem": cert.private_key_pem.bytes(),
            "cert.pem": cert.cert_chain_pems[0].bytes()}


def swap(folder: Path, files: dict[str, bytes]) -> None:
    """Replace the files all at once, as the kubelet updates a Secret volume: a new folder,
    then the ``..data`` symlink replaced; each file is a link through ``..data``."""
    data = folder / f"..{time.time_ns()}"
    data.mkdir()
    for name, content in files.items():
        (data / name).write_bytes(content)
    tmp = folder / "..data_tmp"
    tmp.symlink_to(data.name)
    os.replace(tmp, folder / "..data")
    for name in files:
        if not (folder / name).is_symlink():
            tmp = folder / f"{name}.tmp"
            tmp.symlink_to(f"..data/{name}")
            os.replace(tmp, folder / name)


def serial(der: bytes | None) -> int:
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def leaf_serial(cert: trustme.LeafCert) -> int:
    return x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes()).serial_number


def served_serial(addr: str, ca: trustme.CA) -> int:
    """The serial of the certificate a new TLS connection to ``addr`` is served."""
    host, port = addr.rsplit(":", 1)
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    with (
        socket.create_connection((host, int(port)), timeout=3) as raw,
        ctx.wrap_socket(raw, server_hostname=NAME) as tls,
    ):
        return serial(tls.getpeercert(binary_form=True))


async def client_cert_server(cas: list[trustme.CA], seen: list[int]) -> asyncio.Server:
    """A TLS server that demands a client certificate and answers one HTTP POST with 200,
    recording the serial of the certificate each client presented."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert = cas[0].issue_cert(NAME)
    cert.configure_cert(ctx)
    for ca in cas:
        ca.configure_trust(ctx)
    ctx.verify_mode = ssl.CERT_REQUIRED

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(serial(writer.get_extra_info("ssl_object").getpeercert(binary_form=True)))
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length"))
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ctx)


def test_rotated_files_are_used_by_new_connections_and_bad_ones_keep_the_old(
    tmp_path: Path,
) -> None:
    ca = trustme.CA()
    first, second = ca.issue_cert(NAME), ca.issue_cert(NAME)
    swap(tmp_path, pems(ca, first))
    tls = ReloadingTLS(PeerTLS(*(str(tmp_path / f) for f in ("ca.pem", "cert.pem", "key.pem")),
                               server_name=NAME))
    registry = CollectorRegistry()
    reloads = Counter("reloads", "", ["result"], registry=registry)

    def count(result: str) -> float:
        return registry.get_sample_value("reloads_total", {"result": result}) or 0.0

    async def until(cond: object, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():  # type: ignore[operator]
            assert time.monotonic() < deadline, "the watcher never reloaded"
            await asyncio.sleep(0.05)

    async def ok(_request: Request) -> Response:
        return Response(b"ok")

    async def run() -> tuple[list[int], list[int], list[dict[str, object]]]:
        app = Starlette(routes=[Route(PUSH_PULL_PATH, ok, methods=["POST"])])
        server = HTTPServer(app, bind("127.0.0.1:0"), tls=tls.server_context())
        await server.start()
        presented: list[int] = []
        peer = await client_cert_server([ca], presented)
        peer_addr = f"127.0.0.1:{peer.sockets[0].getsockname()[1]}"
        dialer = HTTPDialer(tls)
        watcher = asyncio.create_task(tls.watch(0.05, reloads))
        served: list[int] = []
        try:
            served.append(await asyncio.to_thread(served_serial, server.address, ca))
            await dialer(peer_addr, b"frame")
            swap(tmp_path, pems(ca, second))  # the rotation
            await until(lambda: count("ok") == 1)
            served.append(await asyncio.to_thread(served_serial, server.address, ca))
            await dialer(peer_addr, b"frame")
            with structlog.testing.capture_logs() as logs:
                swap(tmp_path, {**pems(ca, second), "cert.pem": b"-----BEGIN CERTIFICATE-----\nnot one\n"})
                await until(lambda: count("error") == 1)
            served.append(await asyncio.to_thread(served_serial, server.address, ca))
            await dialer(peer_addr, b"frame")
            return served, presented, logs
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            peer.close()
            await server.stop()

    served, presented, logs = asyncio.run(run())
    a, b = leaf_serial(first), leaf_serial(second)
    assert served == [a, b, b], "the server did not switch, or dropped the good certificate"
    assert presented == [a, b, b], "the dialer did not switch, or dropped the good certificate"
    assert [e["event"] for e in logs] == [
        "peer TLS files not usable; keeping the certificates in force"]
    assert "cert.pem" in str(logs[0]["err"]) and "not one" not in str(logs)
    assert count("ok") == 1 and count("error") == 1


def test_agents_rotated_to_another_ca_let_in_an_agent_with_only_that_ca(tmp_path: Path) -> None:
    """Two agents under CA 1; their files are rewritten for CA 2 (no restart); a third agent
    with only CA 2's files joins them, which needs both directions on the new files."""
    targets_cfg = tmp_path / "shoal.alloy"
    targets_cfg.write_text("")
    keys = tmp_path / "keys"
    keys.write_text(b64key() + "\n")
    old, new = trustme.CA(), trustme.CA()
    agents = Secure(tmp_path, targets_cfg)
    try:
        agents.start(0, old, keys, [1])
        agents.start(1, old, keys, [0])
        procs.eventually(lambda: agents.members(0) == agents.members(1) == {"agent0", "agent1"},
                         timeout=20, interval=0.2)
        for i in (0, 1):
            swap(tmp_path / f"agent{i}", pems(new, new.issue_cert(NAME, *HOSTS)))
            agents.verify[i] = ssl.create_default_context(cafile=str(tmp_path / f"agent{i}/ca.pem"))

        def reloaded(i: int) -> bool:
            with contextlib.suppress(httpx.HTTPError, ssl.SSLError):
                return agents.metric(i, "shoal_cluster_tls_reloads_total", 'result="ok"') >= 1
            return False

        procs.eventually(lambda: reloaded(0) and reloaded(1), timeout=20, interval=0.2)
        agents.start(2, new, keys, [0])
        everyone = {"agent0", "agent1", "agent2"}
        procs.eventually(lambda: all(agents.members(i) == everyone for i in range(3)),
                         timeout=30, interval=0.3)
        assert "peer TLS files reloaded" in agents.procs[0].log_text()
    finally:
        agents.stop_all()
