"""OAuth 2.0 client credentials against a real token endpoint (the test receiver serves both URLs)."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from urllib.parse import parse_qs

from agent.httpconfig import OAuth2Config, TLSConfig
from agent.oauth2 import TokenError, TokenSource
from agent.remote import RemoteWrite, WALOptions
from tests.remote.helpers import batch, endpoint, now_ms
from tests.remote.receiver import Answer, Receiver, Request
from tests.remote.test_client import tls_server


class TokenServer:
    """Answers /token with numbered tokens; refuses HTTP Basic when ``basic`` is False (body credentials only)."""

    def __init__(self, basic: bool = True, expires_in: int = 3600) -> None:
        self.basic = basic
        self.expires_in = expires_in
        self.forms: list[dict[str, list[str]]] = []
        self.auth: list[str] = []
        self.writes: list[str] = []

    def __call__(self, req: Request) -> Answer:
        if req.path == "/token":
            form = parse_qs(req.body.decode())
            self.forms.append(form)
            self.auth.append(req.headers.get("authorization", ""))
            basic_ok = req.headers.get("authorization") == "Basic " + base64.b64encode(b"my+id:s3cr%2Ft").decode()
            body_ok = form.get("client_id") == ["my id"] and form.get("client_secret") == ["s3cr/t"]
            if not ((basic_ok and self.basic) or body_ok):
                return 401, {}, b'{"error":"invalid_client"}'
            n = len([a for a in self.forms if a.get("grant_type") == ["client_credentials"]])
            tok = {"access_token": f"tok-{n}", "token_type": "bearer", "expires_in": self.expires_in}
            return 200, {"Content-Type": "application/json"}, json.dumps(tok).encode()
        self.writes.append(req.headers.get("authorization", ""))
        if req.headers.get("authorization", "").startswith("Bearer tok-"):
            return 204, {}, b""
        return 401, {}, b"no token"


def _run(tmp_path: Path, server: TokenServer, batches: int) -> tuple[Receiver, dict]:
    async def main():
        rx = await Receiver(responder=server).start()
        base = rx.url.rsplit("/api/", 1)[0]
        ep = endpoint(rx.url)
        ep.oauth2 = OAuth2Config(client_id="my id", client_secret="s3cr/t", scopes=["a", "b"],
                                 token_url=base + "/token", endpoint_params={"audience": "mimir"})
        rw = RemoteWrite(tmp_path / "wal", [ep], {}, WALOptions())
        await rw.start()
        for i in range(batches):
            rw.append(batch(3, now_ms() + i, float(i)))
            assert await rw.flush()
        st = rw.status()["endpoints"][0]
        await rw.stop()
        await rx.stop()
        return rx, st

    return asyncio.run(main())


def test_token_fetched_once_and_sent_with_every_write(tmp_path: Path):
    server = TokenServer()
    rx, st = _run(tmp_path, server, 4)
    assert len(server.forms) == 1
    form = server.forms[0]
    assert form["grant_type"] == ["client_credentials"] and form["scope"] == ["a b"]
    assert form["audience"] == ["mimir"] and "client_secret" not in form  # HTTP Basic first
    assert server.writes and set(server.writes) == {"Bearer tok-1"}
    assert st["samples_sent"] == 12 and st["samples_failed"] == 0


def test_short_lived_tokens_are_renewed_and_body_credentials_are_the_fallback(tmp_path: Path):
    server = TokenServer(basic=False, expires_in=5)  # within the 10 s expiry margin: renewed every send
    rx, st = _run(tmp_path, server, 3)
    assert st["samples_sent"] == 9 and st["samples_failed"] == 0
    # The first fetch tried HTTP Basic and was refused; from then on the credentials go in the body.
    assert server.auth[0].startswith("Basic ") and all(a == "" for a in server.auth[1:])
    assert len(server.forms) >= 4
    assert len(set(server.writes)) >= 3  # a fresh token for each send
    assert "s3cr/t" not in st["last_error"]


def test_token_endpoint_down_is_retried_not_dropped(tmp_path: Path):
    class Flaky(TokenServer):
        def __call__(self, req: Request) -> Answer:
            if req.path == "/token" and len(self.forms) < 2:
                self.forms.append({})
                return 503, {}, b"busy"
            return super().__call__(req)

    server = Flaky()
    rx, st = _run(tmp_path, server, 2)
    assert st["samples_sent"] == 6 and st["samples_failed"] == 0 and st["samples_retried"] >= 3
    assert set(server.writes) == {"Bearer tok-1"}


def test_token_endpoint_over_tls_is_trusted_by_its_ca_only(tmp_path: Path):
    cert, server_ctx = tls_server(tmp_path)

    async def main():
        rx = await Receiver(responder=TokenServer()).start(ssl=server_ctx)
        token_url = rx.url.rsplit("/api/", 1)[0] + "/token"
        out = []
        for tls in (TLSConfig(ca_file=cert), None):
            src = TokenSource(OAuth2Config(client_id="my id", client_secret="s3cr/t", token_url=token_url,
                                           tls_config=tls))
            try:
                out.append(await src.authorization())
            except TokenError as exc:
                out.append(exc)
            await src.aclose()
        await rx.stop()
        return out

    trusted, untrusted = asyncio.run(main())
    assert trusted == "Bearer tok-1"
    assert isinstance(untrusted, TokenError) and "s3cr" not in str(untrusted)
    assert "ClientConnectorCertificateError" in str(untrusted)
