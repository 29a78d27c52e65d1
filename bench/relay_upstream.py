"""A bare streaming upstream: the fastest OpenAI-compatible chat stream a Python server can
send, for measuring what relaying it costs (bench/relay.py).

    .venv/bin/python -m uvicorn relay_upstream:app --app-dir bench --loop asyncio --http httptools

A raw ASGI app, no framework: `POST /v1/chat/completions` streams, whatever the body asks
but its `max_tokens` (the number of content chunks, default 16), the chunks OpenAI's
server sends: a role chunk, one word per content chunk, a finish chunk (`length`), a usage
chunk and `[DONE]`. Every event is encoded once at import. Between two events it gives the
loop a turn (`sleep(0)`), as a server's token steps do, so that concurrent streams
interleave and every event leaves in a write of its own; nothing waits. `GET /v1/models`
answers for readiness.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

__all__ = ["CHUNKS_DEFAULT", "WORDS", "app"]

CHUNKS_DEFAULT = 16
WORDS = ("alpha ", "bravo ", "charlie ", "delta ", "echo ", "foxtrot ", "golf ", "hotel ")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class _Body(msgspec.Struct):
    max_tokens: int | None = None


_BODY = msgspec.json.Decoder(_Body)
_HEAD = {"id": "chatcmpl-relay", "object": "chat.completion.chunk", "created": 1700000000, "model": "bare"}


def _event(**fields: Any) -> bytes:
    return b"data: " + msgspec.json.encode({**_HEAD, **fields}) + b"\n\n"


_ROLE = _event(choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
_CONTENT = [
    _event(choices=[{"index": 0, "delta": {"content": w}, "finish_reason": None}], system_fingerprint=None)
    for w in WORDS
]
_FINISH = _event(choices=[{"index": 0, "delta": {}, "finish_reason": "length"}])
_DONE = b"data: [DONE]\n\n"
_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_MODELS = msgspec.json.encode({"object": "list", "data": [{"id": "bare", "object": "model", "owned_by": "bench"}]})


def _usage(chunks: int) -> bytes:
    usage = {"prompt_tokens": 9, "completion_tokens": chunks, "total_tokens": 9 + chunks}
    return _event(choices=[], usage=usage)


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _stream(send: Send, chunks: int) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
    await send({"type": "http.response.body", "body": _ROLE, "more_body": True})
    n = len(_CONTENT)
    for i in range(chunks):
        await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": _CONTENT[i % n], "more_body": True})
    await send({"type": "http.response.body", "body": _FINISH + _usage(chunks) + _DONE, "more_body": False})


async def _plain(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return  # lifespan: nothing to start
    path = scope["path"]
    if scope["method"] == "POST" and path == "/v1/chat/completions":
        try:
            asked = _BODY.decode(await _read_body(receive)).max_tokens
        except msgspec.DecodeError:
            await _plain(send, 400, b'{"error":{"message":"bad body","type":"invalid_request_error"}}')
            return
        await _stream(send, max(1, asked or CHUNKS_DEFAULT))
    elif scope["method"] == "GET" and path == "/v1/models":
        await _plain(send, 200, _MODELS)
    else:
        await _plain(send, 404, b'{"error":{"message":"not found","type":"invalid_request_error"}}')
