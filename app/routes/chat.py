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
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse

from app.errors import error_asgi
from app.limits import check_limits
from compat.errors import from_decode_error, from_gateway_error, http_error
from compat.requests import ChatCompletionRequest, decode_chat_request
from compat.translate import StreamEncoder, to_completion, to_internal
from pipelines.errors import GatewayError, GenerationFailed

if TYPE_CHECKING:
    from litestar.types import Receive, Send

    from app.gateway import Gateway
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
        yield enc.error(from_gateway_error(exc).encode())
        yield enc.done()
        return
    except Exception:
        _log.exception("generation %s failed mid-stream", gen.request_id)
        yield enc.error(http_error(500, "The generation failed.", code="generation_failed").encode())
        yield enc.done()
        return
    if gen.result is None:
        reason = gen.ctx.cancel.reason or "error"
        err = http_error(
            503 if reason in ("timeout", "shutdown") else 500, f"Generation cancelled ({reason}).", code=reason
        )
        yield enc.error(err.encode())
    else:
        yield enc.final(gen.result)
    yield enc.done()


def _headers(gen: Generation) -> dict[str, str]:
    headers = {"x-mia-model": gen.model_id}
    if gen.hops:
        # which model served is in `model`; how the request got there is here
        headers["x-mia-fallback"] = ",".join(str(hop) for hop in gen.hops)
    return headers


class _ClientGone(Exception):
    """The client disconnected before its non-stream answer was ready."""


async def _collect(gen: Generation, receive: Receive) -> PipelineResult:
    """Runs a non-stream generation, cancelling it at once if the client leaves."""
    if gen.ctx.stub:
        # A stub answers in microseconds: watching the socket would cost more than it saves.
        return await gen.collect()
    collect = asyncio.ensure_future(gen.collect())
    watch = asyncio.ensure_future(_wait_disconnect(receive))
    try:
        done, _ = await asyncio.wait((collect, watch), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if collect not in done:
        gen.ctx.cancel.cancel("client_disconnect")
        collect.cancel()
        with contextlib.suppress(BaseException):
            await collect
        raise _ClientGone
    return collect.result()


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


@post("/v1/chat/completions", operation_id="createChatCompletion", status_code=200, include_in_schema=False)
async def chat_completions(request: Request[Any, Any, Any]) -> ASGIResponse:
    gw: Gateway = request.app.state.gateway
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        return error_asgi(http_error(415, "Content-Type must be application/json.", code="unsupported_media_type"))
    try:
        # A client that sends half a body must not hold a connection (and its buffer) forever.
        async with asyncio.timeout(gw.settings.server.body_timeout):
            body = await request.body()
    except TimeoutError:
        err = http_error(
            408, f"The request body did not arrive within {gw.settings.server.body_timeout:g} s.", code="timeout"
        )
        return error_asgi(msgspec.structs.replace(err, headers={"connection": "close"}))
    try:
        wire = decode_chat_request(body)
    except msgspec.DecodeError as exc:
        return error_asgi(from_decode_error(exc))
    except UnicodeDecodeError:
        return error_asgi(http_error(400, "The request body is not valid UTF-8.", code="invalid_json"))
    except RecursionError:
        return error_asgi(http_error(400, "The request body is nested too deeply.", code="invalid_json"))
    if _log.isEnabledFor(logging.DEBUG):
        _log_unknown(body)
    state = request.scope["state"]
    req = to_internal(wire, state["request_id"])
    check_limits(req, gw.settings.server)
    if gw.draining:
        return error_asgi(http_error(503, "The gateway is shutting down.", code="shutting_down"))
    gen = await gw.service.start(req)
    state["model_id"] = gen.model_id
    completion_id = f"chatcmpl-{state['request_id'].removeprefix('req_')}"
    created = int(time.time())
    headers = _headers(gen)
    if req.stream:
        enc = StreamEncoder(
            completion_id=completion_id,
            model=gen.model_id,
            created=created,
            reasoning_fields=gw.settings.server.reasoning_fields,
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
    except _ClientGone:
        return error_asgi(http_error(499, "Client closed the request.", code="client_disconnect"))
    except GenerationFailed:
        reason = gen.ctx.cancel.reason
        if reason not in ("timeout", "shutdown"):
            raise
        err = http_error(503, f"Generation cancelled ({reason}).", code=reason)
        return error_asgi(msgspec.structs.replace(err, headers={"retry-after": "1"}))
    # a non-stream generation may have moved on to another upstream or model part-way
    state["model_id"] = gen.model_id
    headers = _headers(gen)
    completion = to_completion(
        result,
        completion_id=completion_id,
        model=gen.model_id,
        created=created,
        reasoning_fields=gw.settings.server.reasoning_fields,
        logprobs=req.logprobs,
    )
    return ASGIResponse(body=_ENCODER.encode(completion), media_type="application/json", headers=headers)
