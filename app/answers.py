"""A JSON answer as two ASGI messages, for the routes served without Litestar.

Litestar's `ASGIResponse` builds a header container, encodes and checks every header on
each response (about 5 % of a stub chat completion); this one sends what it is given."""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar.response.base import ASGIResponse

from app.sse import InstantEventStream

if TYPE_CHECKING:
    from collections.abc import Mapping

    from litestar.types import Receive, Scope, Send

__all__ = ["Answer", "JsonAnswer"]

_JSON = (b"content-type", b"application/json")


class JsonAnswer:
    """A 200 with a JSON `body` (already encoded) and a few `headers` of ours (ASCII)."""

    __slots__ = ("body", "headers")

    def __init__(self, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.body = body
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = [_JSON, (b"content-length", str(len(self.body)).encode())]
        if self.headers:
            raw.extend((k.encode(), v.encode()) for k, v in self.headers.items())
        await send({"type": "http.response.start", "status": 200, "headers": raw})
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


Answer = ASGIResponse | JsonAnswer | InstantEventStream
"""What a direct route returns: an answer, a stream, or a refusal (Litestar's class)."""
