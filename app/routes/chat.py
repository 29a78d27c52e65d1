"""POST /v1/chat/completions, streamed (SSE) and not."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Request
from litestar.response.base import ASGIResponse

from app.answers import Answer, JsonAnswer
from app.errors import error_asgi
from app.gateway import Gateway
from app.routes.generation import collect, event_stream, generation_headers, read_request, start
from compat.refusals import ClientGone
from compat.requests import ChatCompletionRequest, decode_chat_request
from compat.translate import StreamEncoder, to_completion, to_internal

__all__ = ["chat_completions"]

_KNOWN = frozenset(ChatCompletionRequest.__struct_fields__)
_ENCODER = msgspec.json.Encoder()


async def chat_completions(request: Request[Any, Any, Any], gateway: Gateway) -> Answer:
    wire = await read_request(request, gateway, decode_chat_request, _KNOWN)
    if isinstance(wire, ASGIResponse):
        return wire
    state = request.scope["state"]
    req = to_internal(wire, state["request_id"])
    gen = await start(request, gateway, req)
    if isinstance(gen, ASGIResponse):
        return gen
    completion_id = f"chatcmpl-{state['request_id'].removeprefix('req_')}"
    created = int(time.time())
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
        return event_stream(gen, enc, generation_headers(gen))
    try:
        result = await collect(gen, request.receive)
    except ClientGone as exc:
        return error_asgi(exc)
    # a non-stream generation may have moved on to another upstream or model part-way
    state["model_id"] = gen.model_id
    completion = to_completion(
        result,
        completion_id=completion_id,
        model=gen.model_id,
        created=created,
        reasoning_fields=gateway.settings.server.reasoning_fields,
        logprobs=req.logprobs,
    )
    return JsonAnswer(_ENCODER.encode(completion), generation_headers(gen))
