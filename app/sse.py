"""A generation as a server-sent-events response, written straight to ASGI.

Two ways, by what the generation is:

- one that takes real time (a model, an upstream): Litestar's streaming response, whose
  anyio task group watches for the client to leave beside the stream and cancels it at
  once (the generation ends `client_disconnect` and its slot goes back within a
  millisecond), one write per event as it comes;
- an instant one (a stub: its whole answer takes microseconds): written in the request's
  own task in batches of events, one write each, with nothing watching (it ends before a
  watcher could matter). The task group and a write per event were a third of a stub
  stream's time.

Either way the iterator and the generation are closed whatever happens, so a stream that
never started still gives back its model slot."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, Any

from litestar.response.streaming import ASGIStreamingResponse

if TYPE_CHECKING:
    from litestar.types import Receive, Scope, Send

    from pipelines.service import Generation

__all__ = ["InstantEventStream", "WatchedEventStream", "event_stream_of", "wait_disconnect"]

_BATCH = 64
"""Events of an instant generation per write."""
_SSE_TEXT_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
_SSE_HEADERS = (
    (b"content-type", b"text/event-stream"),
    *((k.encode(), v.encode()) for k, v in _SSE_TEXT_HEADERS.items()),
)


async def wait_disconnect(receive: Receive) -> None:
    """Returns once the client has gone."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class InstantEventStream:
    """A 200 `text/event-stream` of `chunks` (already-encoded events) for an instant
    `generation`, in batches of events."""

    __slots__ = ("_chunks", "_generation", "_headers")

    def __init__(self, generation: Generation, chunks: AsyncGenerator[bytes, None], headers: Mapping[str, str]) -> None:
        self._generation = generation
        self._chunks = chunks
        self._headers = [*_SSE_HEADERS, *((k.encode(), v.encode()) for k, v in headers.items())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self._headers})
            await self._batched(send)
        finally:
            await self._chunks.aclose()
            await self._generation.aclose()

    async def _batched(self, send: Send) -> None:
        held: list[bytes] = []
        async for chunk in self._chunks:
            held.append(chunk)
            if len(held) == _BATCH:
                await send({"type": "http.response.body", "body": b"".join(held), "more_body": True})
                held.clear()
        await send({"type": "http.response.body", "body": b"".join(held), "more_body": False})


class WatchedEventStream(ASGIStreamingResponse):
    """`text/event-stream` for a generation that takes real time (see the module's doc)."""

    def __init__(self, generation: Generation, chunks: AsyncGenerator[bytes, None], headers: Mapping[str, str]) -> None:
        super().__init__(iterator=chunks, media_type="text/event-stream", headers={**headers, **_SSE_TEXT_HEADERS})
        self._generation = generation

    async def send_body(self, send: Send, receive: Receive) -> None:
        try:
            await super().send_body(send, receive)
        finally:
            iterator: Any = self.iterator
            await iterator.aclose()
            await self._generation.aclose()


def event_stream_of(
    generation: Generation, chunks: AsyncGenerator[bytes, None], headers: Mapping[str, str]
) -> InstantEventStream | WatchedEventStream:
    """The stream response that fits `generation`."""
    if generation.instant:
        return InstantEventStream(generation, chunks, headers)
    return WatchedEventStream(generation, chunks, headers)
