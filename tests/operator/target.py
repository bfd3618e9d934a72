"""A real scrape target that checks the bearer token of every request (401 otherwise),
on any 127.0.0.x address, recording the tokens it was shown and the paths it was asked."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class TokenTarget:
    def __init__(self, host: str, token: str = "", body: str = "app_up 1\n") -> None:
        self.token = token  # "" accepts any request
        self.body = body.encode()
        self.seen: list[str] = []  # Authorization headers, in order
        self.paths: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                auth = self.headers.get("Authorization", "")
                owner.seen.append(auth)
                owner.paths.append(self.path)
                ok = not owner.token or auth == f"Bearer {owner.token}"
                body = owner.body if ok else b"unauthorized\n"
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.host = host
        self.port = self.server.server_address[1]

    def __enter__(self) -> TokenTarget:
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
