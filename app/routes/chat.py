"""POST /v1/chat/completions, streamed (SSE) and not."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Request, post
from litestar.di import NamedDependency
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse

from app import paths
from app.errors import error_asgi
from app.gateway import Gateway
from app.limits import check_limits
from compat.errors import decode_error, from_gateway_error
from compat.refusals import ClientGone, Draining, MalformedBody, RequestTimeout, UnsupportedMediaType
from compat.requests import ChatCompletionRequest, decode_chat_request
from compat.translate import StreamEncoder, to_completion, to_internal
from pipelines.errors import Cancelled, CancelReason, GatewayError, GenerationFailed

if TYPE_CHECKING:
    from litestar.types import Receive, Send

    from pipelines.pipeline import PipelineResult
    from pipelines.service import Generation

__all__ = ["chat_completions"]

_log = logging.getLogger(__name__)
_KNOWN = frozenset(ChatCompletionRequest.__struct_fields__)
_ENCODER = msgspec.json.Encoder()


class _SSE(ASGIStreamingResponse):
    """A stream that always closes its iterator and its generation, so a vanished
    client ends the generation at once (not whenever the generator is collected),
    and a stream that never started still gives back its model slot."""

    def __init__(self, *, generation: Generation, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._generation = generation

    async def send_body(self, send: Send, receive: Receive) -> None:
        try:
            await super().send_body(send, receive)
        finally:
            iterator: Any = self.iterator
            await iterator.aclose()
            await self._generation.aclose()


def _log_unknown(body: bytes) -> None:
    with contextlib.suppress(msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raw = msgspec.json.decode(body)
        if isinstance(raw, dict):
            unknown = sorted(set(raw) - _KNOWN)
            if unknown:
                _log.debug("ignoring unknown request fields: %s", ", ".join(unknown))


async def _sse(gen: Generation, enc: StreamEncoder) -> AsyncIterator[bytes]:
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
            yield enc.final(gen.result)
            yield enc.done()
            return
        failure = Cancelled(gen.ctx.cancel.reason or CancelReason.ERROR)
    # The stream's 200 and headers are out: the error (Retry-After included) can only
    # be told in band, as OpenAI does.
    yield enc.error(from_gateway_error(failure).encode())
    yield enc.done()


def _headers(gen: Generation) -> dict[str, str]:
    headers = {"x-mia-model": gen.model_id}
    if gen.hops:
        # which model served is in `model`; how the request got there is here
        headers["x-mia-fallback"] = ",".join(str(hop) for hop in gen.hops)
    return headers


async def _collect(gen: Generation, receive: Receive) -> PipelineResult:
    """Runs a non-stream generation, cancelling it at once if the client leaves."""
    if gen.instant:
        return await gen.collect()
    collect = asyncio.ensure_future(gen.collect())
    watch = asyncio.ensure_future(_wait_disconnect(receive))
    try:
        done, _ = await asyncio.wait((collect, watch), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if collect not in done:
        gen.ctx.cancel.cancel(CancelReason.CLIENT_DISCONNECT)
        collect.cancel()
        with contextlib.suppress(BaseException):
            await collect
        raise ClientGone
    return collect.result()


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


@post(paths.CHAT_COMPLETIONS, operation_id="createChatCompletion", status_code=200, include_in_schema=False)
async def chat_completions(request: Request[Any, Any, Any], gateway: NamedDependency[Gateway]) -> ASGIResponse:
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        return error_asgi(UnsupportedMediaType())
    try:
        # A client that sends half a body must not hold a connection (and its buffer) forever.
        async with asyncio.timeout(gateway.settings.server.body_timeout):
            body = await request.body()
    except TimeoutError:
        # the rest of the body may still come: only a new connection starts clean
        return error_asgi(RequestTimeout("body", gateway.settings.server.body_timeout), {"connection": "close"})
    try:
        wire = decode_chat_request(body)
    except msgspec.DecodeError as exc:
        return error_asgi(decode_error(exc))
    except UnicodeDecodeError:
        return error_asgi(MalformedBody("The request body is not valid UTF-8."))
    except RecursionError:
        return error_asgi(MalformedBody("The request body is nested too deeply."))
    if _log.isEnabledFor(logging.DEBUG):
        _log_unknown(body)
    state = request.scope["state"]
    req = to_internal(wire, state["request_id"])
    check_limits(req, gateway.settings.server)
    if gateway.draining:
        return error_asgi(Draining())
    gen = await gateway.service.start(req)
    state["model_id"] = gen.model_id
    completion_id = f"chatcmpl-{state['request_id'].removeprefix('req_')}"
    created = int(time.time())
    headers = _headers(gen)
    if req.stream:
        enc = StreamEncoder(
            completion_id=completion_id,
            model=gen.model_id,
            created=created,
            reasoning_fields=gateway.settings.server.reasoning_fields,
            include_usage=bool(wire.stream_options and wire.stream_options.include_usage),
            logprobs=req.logprobs,
            choices=req.n,
        )
        return _SSE(
            generation=gen,
            iterator=_sse(gen, enc),
            media_type="text/event-stream",
            headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
        )
    try:
        result = await _collect(gen, request.receive)
    except ClientGone as exc:
        return error_asgi(exc)
    # a non-stream generation may have moved on to another upstream or model part-way
    state["model_id"] = gen.model_id
    headers = _headers(gen)
    completion = to_completion(
        result,
        completion_id=completion_id,
        model=gen.model_id,
        created=created,
        reasoning_fields=gateway.settings.server.reasoning_fields,
        logprobs=req.logprobs,
    )
    return ASGIResponse(body=_ENCODER.encode(completion), media_type="application/json", headers=headers)
