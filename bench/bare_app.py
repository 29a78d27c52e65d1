"""A bare Litestar handler: a msgspec body in, a ~300-byte chat completion out (or a short SSE stream).

The floor the stub path's overhead is measured against (bench/compare.py serves it with
uvicorn, one worker; bench/stub_inprocess.py calls it in process):

    .venv/bin/python -m uvicorn bare_app:app --app-dir bench --loop asyncio --http httptools
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
from litestar import Litestar, Response, post
from litestar.response import Stream

__all__ = ["app"]


class Message(msgspec.Struct):
    role: str
    content: str


class ChatRequest(msgspec.Struct):
    model: str
    messages: list[Message]
    max_tokens: int | None = None
    stream: bool = False


BODY = msgspec.json.encode(
    {
        "id": "chatcmpl-0123456789abcdef01234567",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "stub-chat",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "alpha beta gamma delta"},
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
    }
)
CHUNKS = [
    b'data: {"id":"chatcmpl-0","object":"chat.completion.chunk","created":1700000000,"model":"stub-chat",'
    + b'"choices":[{"index":0,"delta":{"content":"'
    + word
    + b' "},"finish_reason":null}]}\n\n'
    for word in (b"alpha", b"beta", b"gamma", b"delta")
] + [b"data: [DONE]\n\n"]


async def _events() -> AsyncIterator[bytes]:
    for chunk in CHUNKS:
        yield chunk


@post("/v1/chat/completions", status_code=200)
async def chat(data: ChatRequest) -> Response[bytes] | Stream:
    if data.stream:
        return Stream(_events(), media_type="text/event-stream")
    return Response(BODY, media_type="application/json")


app = Litestar(route_handlers=[chat])
