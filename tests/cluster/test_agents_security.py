"""Real ``shoal run`` agents with Alloy's peer TLS flags and Shoal's gossip key file.

Certificates come from trustme (two unrelated CAs); every agent serves HTTPS and
posts push-pull over it. Asserted: two agents with the same CA and key form a
cluster; an agent with another key reaches them over TLS but is refused (counted
as unauthenticated) and stays alone; an agent whose certificate comes from
another CA cannot even complete the handshake; a key rotation by rewriting the
key files (no restart) lets the refused agent in; no key reaches any log.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest
import trustme
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agent.cluster.peertls import PeerTLS, PeerTLSError
from agent.cluster.service import PUSH_PULL_PATH, HTTPDialer
from agent.server.http import HTTPServer, bind
from tests import procs
from tests.cluster.test_agents import config, free_port
from tests.targets import Target

pytestmark = pytest.mark.timeout(180)

HOSTS = ["127.0.11.2", "127.0.11.3", "127.0.11.4", "127.0.11.5"]
TUNING = "probe_interval=0.4,probe_timeout=0.2,push_pull_interval=2,key_check=0.5,tls_check=0.5"


def b64key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


class Secure:
    """Agents on HOSTS, each with its own TLS files and key file."""

    def __init__(self, tmp: Path, cfg: Path) -> None:
        self.tmp, self.cfg = tmp, cfg
        self.ports = {h: free_port(h) for h in HOSTS}
        self.procs: dict[int, procs.Proc] = {}
        self.verify: dict[int, ssl.SSLContext] = {}

    def start(self, i: int, ca: trustme.CA, keyfile: Path, join: list[int]) -> None:
        host = HOSTS[i]
        folder = self.tmp / f"agent{i}"
        folder.mkdir(exist_ok=True)
        cert = ca.issue_cert("shoal-peer", *HOSTS)
        ca.cert_pem.write_to_path(str(folder / "ca.pem"))
        cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
        cert.private_key_pem.write_to_path(str(folder / "key.pem"))
        peers = ",".join(f"{HOSTS[j]}:{self.ports[HOSTS[j]]}" for j in join)
        p = procs.agent(
            folder, self.cfg,
            f"--server.http.listen-addr={host}:{self.ports[host]}",
            "--cluster.enabled", f"--cluster.node-name=agent{i}", "--cluster.name=sec",
            f"--cluster.join-addresses={peers}", "--cluster.rejoin-interval=1s",
            f"--cluster.tuning={TUNING}", "--config.watch-interval=0",
            "--cluster.enable-tls", f"--cluster.tls-ca-path={folder / 'ca.pem'}",
            f"--cluster.tls-cert-path={folder / 'cert.pem'}",
            f"--cluster.tls-key-path={folder / 'key.pem'}", "--cluster.tls-server-name=shoal-peer",
            f"--cluster.gossip-key-file={keyfile}",
        )
        p.url = f"https://{host}:{self.ports[host]}"
        self.procs[i] = p
        self.verify[i] = ssl.create_default_context(cafile=str(folder / "ca.pem"))
        deadline = time.monotonic() + 30
        while True:
            assert p.popen.poll() is None, p.log_text()[-3000:]
            with contextlib.suppress(httpx.HTTPError, ssl.SSLError):
                if self.get(i, "/-/ready").status_code == 200:
                    return
            assert time.monotonic() < deadline, p.log_text()[-3000:]
            time.sleep(0.1)

    def get(self, i: int, path: str) -> httpx.Response:
        with httpx.Client(verify=self.verify[i], timeout=3) as c:
            # The certificate names the agents' IPs too, so the URL's host is checked as is.
            return c.get(self.procs[i].url + path)

    def members(self, i: int) -> set[str]:
        return {p["name"] for p in self.get(i, "/api/v0/web/peers").json()
                if p["liveness"] == "alive"}

    def metric(self, i: int, name: str, labels: str) -> float:
        for line in self.get(i, "/metrics").text.splitlines():
            if line.startswith(f"{name}{{{labels}}}"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def stop_all(self) -> None:
        procs.stop_all(self.procs.values())


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[Secure]:
    targets = [Target(f"sec_metric{{i=\"{i}\"}} {i}\n").start() for i in range(4)]
    cfg = tmp_path / "shoal.alloy"
    cfg.write_text(config(targets, "http://127.0.0.1:9"))  # no backend: writes fail, harmless
    s = Secure(tmp_path, cfg)
    try:
        yield s
    finally:
        s.stop_all()
        for t in targets:
            t.stop()


def test_tls_and_gossip_keys_between_real_agents(secure: Secure, tmp_path: Path) -> None:
    ca, other_ca = trustme.CA(), trustme.CA()
    k, k2 = b64key(), b64key()
    shared, odd = tmp_path / "keys", tmp_path / "odd-keys"
    shared.write_text(k + "\n")
    odd.write_text(k2 + "\n")
    secure.start(0, ca, shared, [1])
    secure.start(1, ca, shared, [0])
    procs.eventually(lambda: secure.members(0) == secure.members(1) == {"agent0", "agent1"},
                     timeout=20, interval=0.2)
    # Plain HTTP to a TLS agent gets nowhere.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{HOSTS[0]}:{secure.ports[HOSTS[0]]}/-/ready", timeout=2)

    secure.start(2, ca, odd, [0, 1])  # right CA, other key
    secure.start(3, other_ca, shared, [0, 1])  # right key, certificate of another CA
    procs.eventually(
        lambda: secure.metric(0, "shoal_cluster_messages_dropped_total",
                              'reason="unauthenticated"') > 0, timeout=20, interval=0.3)
    time.sleep(3)  # a few rejoins: still nobody let in
    assert secure.members(0) == secure.members(1) == {"agent0", "agent1"}
    assert secure.members(2) == {"agent2"} and secure.members(3) == {"agent3"}
    assert "certificate verify failed" in secure.procs[3].log_text()  # the join failure says why
    # Rotation without restart: every file opens both keys; agent2 now gets in.
    shared.write_text(f"{k}\n{k2}\n")
    odd.write_text(f"{k2}\n{k}\n")
    procs.eventually(lambda: secure.members(0) == {"agent0", "agent1", "agent2"} == secure.members(2),
                     timeout=20, interval=0.3)
    assert secure.metric(0, "shoal_cluster_key_reloads_total", 'result="ok"') >= 1
    assert secure.members(3) == {"agent3"}  # TLS still keeps the other CA's agent out
    for p in secure.procs.values():
        text = p.log_text()
        assert k not in text and k2 not in text


def test_tls_flags_missing_or_unreadable_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(PeerTLSError, match="needs --cluster.tls-ca-path, --cluster.tls-cert-path"):
        PeerTLS("", "", "").check()
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(PeerTLSError, match="certificate .*junk.pem"):
        PeerTLS(str(tmp_path / "ca.pem"), str(tmp_path / "junk.pem"), str(tmp_path / "junk.pem")).check()
    with pytest.raises(PeerTLSError, match="CA file .*missing.pem"):
        PeerTLS(str(tmp_path / "missing.pem"), "c", "k").check()


def test_a_bad_key_file_or_tls_file_stops_the_start_with_the_reason(tmp_path: Path) -> None:
    cfg = tmp_path / "empty.alloy"
    cfg.write_text("")
    secret = base64.b64encode(os.urandom(20)).decode()  # 20 bytes: not an AES key size
    keys = tmp_path / "keys"
    keys.write_text(secret + "\n")
    port = free_port("127.0.0.1")
    for flags, reason in [
        ([f"--cluster.gossip-key-file={keys}"], "line 1 decodes to 20 bytes"),
        (["--cluster.enable-tls", f"--cluster.tls-ca-path={tmp_path / 'none.pem'}",
          "--cluster.tls-cert-path=c", "--cluster.tls-key-path=k"], "CA file"),
    ]:
        p = procs.agent(tmp_path, cfg, "--cluster.enabled", *flags, port=port)
        assert p.popen.wait(30) == 1
        log = p.log_text()
        assert reason in log and secret not in log


def test_the_dialer_checks_the_peer_against_the_tls_server_name(tmp_path: Path) -> None:
    """A certificate that names only "shoal-peer", served on 127.0.0.1: the dialer reaches it when
    told that server name and refuses it when it checks the address dialled."""
    ca = trustme.CA()
    cert = ca.issue_cert("shoal-peer")
    files = [tmp_path / n for n in ("ca.pem", "cert.pem", "key.pem")]
    ca.cert_pem.write_to_path(str(files[0]))
    cert.cert_chain_pems[0].write_to_path(str(files[1]))
    cert.private_key_pem.write_to_path(str(files[2]))
    named = PeerTLS(*map(str, files), server_name="shoal-peer")

    async def echo(request: Request) -> Response:
        return Response(b"answer:" + await request.body())

    async def run() -> tuple[bytes, str]:
        app = Starlette(routes=[Route(PUSH_PULL_PATH, echo, methods=["POST"])])
        server = HTTPServer(app, bind("127.0.0.1:0"), tls=named.server_context())
        await server.start()
        try:
            answer = await HTTPDialer(named)(server.address, b"frame")
            with pytest.raises(aiohttp.ClientError) as refused:
                await HTTPDialer(PeerTLS(*map(str, files)))(server.address, b"frame")
            return answer, str(refused.value)
        finally:
            await server.stop()

    answer, refused = asyncio.run(run())
    assert answer == b"answer:frame"
    assert "certificate verify failed" in refused, refused
