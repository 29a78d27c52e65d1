"""What the generation routes (chat completions, responses) share: reading and decoding
the body within its bounds, starting the generation, a stream that always closes, and a
non-stream answer that ends as soon as its client leaves. Each wire brings its decoder and
its encoder (compat/); everything between is here, once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import msgspec
from litestar import Request
from litestar.response.base import ASGIResponse

from app.errors import error_asgi
from app.gateway import Gateway
from app.http_protocol import BODY_COMPLETE
from app.limits import check_limits
from app.sse import InstantEventStream, WatchedEventStream, event_stream_of, wait_disconnect
from compat.errors import WireError, decode_error, from_gateway_error
from compat.refusals import BodyTooLarge, ClientGone, Draining, MalformedBody, RequestTimeout, UnsupportedMediaType
from pipelines.errors import Cancelled, CancelReason, GatewayError, GenerationFailed

if TYPE_CHECKING:
    from litestar.types import Receive

    from pipelines.pipeline import PipelineResult
    from pipelines.service import Generation
    from pipelines.types import Delta, GenerationRequest

__all__ = ["EventEncoder", "collect", "event_stream", "events", "generation_headers", "read_request", "start"]

_log = logging.getLogger(__name__)
T = TypeVar("T")
Commit = Callable[[], Awaitable[None]]
_CLOSE = {"connection": "close"}


class EventEncoder(Protocol):
    """A wire's stream encoder (compat/): bytes for the stream's start, each delta, its
    end, a failure after the 200, and whatever closes the stream."""

    def first(self) -> bytes: ...

    def delta(self, d: Delta, /) -> bytes: ...

    def final(self, result: PipelineResult, /) -> bytes: ...

    def failure(self, error: WireError, /) -> bytes: ...

    def done(self) -> bytes: ...


def _log_unknown(body: bytes, known: frozenset[str]) -> None:
    with contextlib.suppress(msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raw = msgspec.json.decode(body)
        if isinstance(raw, dict):
            unknown = sorted(set(raw) - known)
            if unknown:
                _log.debug("ignoring unknown request fields: %s", ", ".join(unknown))


def _content(headers: Iterable[tuple[bytes, bytes]]) -> tuple[bytes, int | None]:
    """The request's media type (lowercased) and declared length, from the raw headers
    (the server gives their names in lowercase)."""
    media_type, length = b"", None
    for name, value in headers:
        if name == b"content-type":
            media_type = value.partition(b";")[0].strip().lower()
        elif name == b"content-length" and value.isdigit():
            length = int(value)
    return media_type, length


async def _body(receive: Receive, limit: int) -> bytes:
    """The whole body, at most `limit` bytes (413 past it); a client that leaves
    half-way is a 499, not a server error."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_request(
    request: Request[Any, Any, Any], gateway: Gateway, decode: Callable[[bytes], T], known: frozenset[str]
) -> T | ASGIResponse:
    """The body, decoded by the wire's `decode` (`known`: its top-level fields, for the
    debug log of those ignored), or the refusal to answer with."""
    server = gateway.settings.server
    media_type, length = _content(request.scope["headers"])
    if media_type != b"application/json":
        return error_asgi(UnsupportedMediaType())
    if length is not None and length > server.max_body_bytes:
        return error_asgi(BodyTooLarge(), _CLOSE)  # the rest of that body is not worth reading
    try:
        extensions = request.scope.get("extensions") or {}
        if BODY_COMPLETE in extensions:
            body = await _body(request.receive, server.max_body_bytes)  # already here: cannot stall
        else:
            # A client that sends half a body must not hold a connection (and its buffer) forever.
            async with asyncio.timeout(server.body_timeout):
                body = await _body(request.receive, server.max_body_bytes)
    except TimeoutError:
        # the rest of the body may still come: only a new connection starts clean
        return error_asgi(RequestTimeout("body", server.body_timeout), _CLOSE)
    except GatewayError as exc:
        return error_asgi(exc, _CLOSE)
    try:
        wire = decode(body)
    except msgspec.DecodeError as exc:
        return error_asgi(decode_error(exc))
    except UnicodeDecodeError:
        return error_asgi(MalformedBody("The request body is not valid UTF-8."))
    except RecursionError:
        return error_asgi(MalformedBody("The request body is nested too deeply."))
    if _log.isEnabledFor(logging.DEBUG):
        _log_unknown(body, known)
    return wire


async def start(request: Request[Any, Any, Any], gateway: Gateway, req: GenerationRequest) -> Generation | ASGIResponse:
    """The generation, started (routed, loaded, admitted), or the refusal to answer with."""
    check_limits(req, gateway.settings.server)
    if gateway.draining:
        return error_asgi(Draining())
    gen = await gateway.service.start(req)
    request.scope["state"]["model_id"] = gen.model_id
    return gen


def generation_headers(gen: Generation) -> dict[str, str]:
    headers = {"x-mia-model": gen.model_id}
    if gen.hops:
        # which model served is in `model`; how the request got there is here
        headers["x-mia-fallback"] = ",".join(str(hop) for hop in gen.hops)
    return headers


async def events(gen: Generation, enc: EventEncoder, commit: Commit | None = None) -> AsyncGenerator[bytes, None]:
    """The generation's events by the wire's encoder, ending in `done` (after the final
    events, or a failure told in band). `commit`: see `event_stream`."""
    yield enc.first()
    try:
        async for delta in gen.deltas():
            yield enc.delta(delta)
    except GatewayError as exc:
        failure = exc
    except Exception:
        _log.exception("generation %s failed mid-stream", gen.request_id)
        failure = GenerationFailed("The generation failed.")
    else:
        if gen.result is not None:
            last = enc.final(gen.result)
            try:
                if commit is not None:
                    await commit()
            except GatewayError as exc:
                failure = exc  # not stored: the stream must not say it completed
            else:
                yield last
                yield enc.done()
                return
        else:
            failure = Cancelled(gen.ctx.cancel.reason or CancelReason.ERROR)
    # The stream's 200 and headers are out: the error (Retry-After included) can only
    # be told in band, as OpenAI does.
    yield enc.failure(from_gateway_error(failure))
    yield enc.done()


def event_stream(
    gen: Generation,
    enc: EventEncoder,
    headers: dict[str, str],
    commit: Commit | None = None,
    *,
    chunks: AsyncGenerator[bytes, None] | None = None,
) -> InstantEventStream | WatchedEventStream:
    """The generation as server-sent events, by the wire's encoder (or `chunks`: a stream
    that goes on to further generations after `gen`, each of which it closes itself).
    `commit`, if any, runs once the final event is encoded and before it is sent (a stored
    response is committed before the client hears it completed); if it fails, the stream
    ends in that error."""
    return event_stream_of(gen, chunks if chunks is not None else events(gen, enc, commit), headers)


async def collect(gen: Generation, receive: Receive) -> PipelineResult:
    """Runs a non-stream generation, cancelling it at once if the client leaves."""
    if gen.instant:
        return await gen.collect()
    task = asyncio.ensure_future(gen.collect())
    watch = asyncio.ensure_future(wait_disconnect(receive))
    try:
        done, _ = await asyncio.wait((task, watch), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if task not in done:
        gen.ctx.cancel.cancel(CancelReason.CLIENT_DISCONNECT)
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise ClientGone
    return task.result()
