"""A recording reverse proxy on loopback: what a real client (Codex CLI) sends the gateway,
kept for the test to read, and the gateway's answers passed back unchanged as they stream."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

__all__ = ["RecordingProxy", "recording_proxy"]

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "host"})


class RecordingProxy:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        self.base_url = f"http://127.0.0.1:{server.server_address[1]}"
        self.bodies: list[bytes] = []
        """Every POST body received, in order."""


@contextmanager
def recording_proxy(target: str) -> Iterator[RecordingProxy]:
    """Forwards every request to `target` (a base URL without path), recording POST bodies."""
    client = httpx.Client(base_url=target, timeout=120)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # the answer ends when the connection closes: no framing to redo

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            self._forward(None)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            proxy.bodies.append(body)
            self._forward(body)

        def _forward(self, body: bytes | None) -> None:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            with client.stream(self.command, self.path, content=body, headers=headers) as r:
                self.send_response(r.status_code)
                for key, value in r.headers.items():
                    if key.lower() not in _HOP_BY_HOP | {"content-encoding"}:
                        self.send_header(key, value)
                self.end_headers()
                for chunk in r.iter_bytes():
                    self.wfile.write(chunk)
                    self.wfile.flush()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    proxy = RecordingProxy(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        client.close()
