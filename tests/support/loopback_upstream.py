"""A tiny OpenAI-compatible upstream on loopback, for gateways whose `openai_http` models
must meet a stream that never ends or a server that fails: the outside world, played by
a real HTTP server in the test process (not a mock of the gateway's own code).

The upstream model name in the request body picks the behaviour:
- `endless`: a 200 event stream of one word every `interval` seconds, never finished, until
  the gateway hangs up;
- `fail`: 500 with an OpenAI error envelope;
- anything else: 404.

On `/v1/embeddings` the model `fail` answers 500 too; any other model answers, for input
`i`, the vector `[len(input), i, 1.0]` (padded with zeros to `dimensions` when that is
given, which only the model `matryoshka` accepts: others refuse it with a 400 as OpenAI's
older models do).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["TinyUpstream", "tiny_upstream"]


def _chunk(text: str) -> bytes:
    data = {
        "id": "chatcmpl-tiny",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "endless",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }
    return b"data: " + json.dumps(data).encode() + b"\n\n"


class TinyUpstream:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        self.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        self.requests: list[str] = []
        """The upstream model of every chat request received, in order."""
        self.embedding_bodies: list[dict[str, object]] = []
        """The body of every embeddings request received, in order."""
        self.open_streams = 0
        self.lock = threading.Lock()


@contextmanager
def tiny_upstream(interval: float = 0.02) -> Iterator[TinyUpstream]:
    holder: list[TinyUpstream] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            self._json(200, {"object": "list", "data": []})

        def do_POST(self) -> None:
            up = holder[0]
            length = int(self.headers.get("content-length", "0"))
            raw = self.rfile.read(length)
            if not length or len(raw) < length:
                # The client hung up before its body arrived (the gateway stopped that
                # generation): no request reached this upstream, and no one reads an answer.
                self.close_connection = True
                return
            payload = json.loads(raw)
            model = payload.get("model", "")
            with up.lock:
                up.requests.append(model)
            if self.path.endswith("/embeddings") and model != "fail":
                self._embeddings(up, payload)
            elif model == "fail":
                self._json(500, {"error": {"message": "the upstream broke", "type": "server_error", "code": None}})
            elif model == "endless":
                self._endless(up)
            else:
                self._json(404, {"error": {"message": f"no model {model}", "type": "invalid_request_error"}})

        def _embeddings(self, up: TinyUpstream, payload: dict[str, object]) -> None:
            with up.lock:
                up.embedding_bodies.append(payload)
            dimensions = payload.get("dimensions")
            if dimensions is not None and payload["model"] != "matryoshka":
                error = {
                    "message": "This model does not support specifying dimensions.",
                    "type": "invalid_request_error",
                }
                self._json(400, {"error": {**error, "param": "dimensions", "code": None}})
                return
            inputs = payload["input"]
            assert isinstance(inputs, list)
            size = dimensions if isinstance(dimensions, int) else 3
            data = [
                {"object": "embedding", "index": i, "embedding": ([float(len(x)), float(i), 1.0] + [0.0] * size)[:size]}
                for i, x in enumerate(inputs)
            ]
            tokens = sum(len(x) for x in inputs)
            usage = {"prompt_tokens": tokens, "total_tokens": tokens}
            self._json(200, {"object": "list", "data": data, "model": payload["model"], "usage": usage})

        def _endless(self, up: TinyUpstream) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            with up.lock:
                up.open_streams += 1
            try:
                while True:
                    self.wfile.write(_chunk("word "))
                    self.wfile.flush()
                    time.sleep(interval)
            except OSError:
                pass  # the gateway hung up
            finally:
                with up.lock:
                    up.open_streams -= 1
                self.close_connection = True

        def _json(self, status: int, obj: object) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    holder.append(TinyUpstream(server))
    thread = threading.Thread(target=server.serve_forever, name="tiny-upstream", daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()
