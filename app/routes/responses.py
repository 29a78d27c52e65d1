"""POST /v1/responses, streamed (SSE) and not: the Responses wire over the same
generation as chat completions.

Nothing is stored yet: the response says `store: false` whatever was asked, and when the
client asked to store it (OpenAI's default) the header `x-mia-store: unavailable` says
it was not. Hosted tools the gateway cannot run are left out of the prompt and named in
`x-mia-ignored-tools` (and a `ToolsIgnored` event: a log line and a counter), so that a client
that always sends them keeps working; `[server] hosted_tools = "refuse"` makes them a 400."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Request, post
from litestar.di import NamedDependency
from litestar.response.base import ASGIResponse

from app import paths
from app.errors import error_asgi
from app.gateway import Gateway
from app.routes.generation import collect, event_stream, generation_headers, read_request, start
from compat.refusals import ClientGone
from compat.responses_wire import (
    ResponsesRequest,
    ResponseStreamEncoder,
    Translated,
    decode_responses_request,
    to_internal,
    to_response,
)
from pipelines.events import ToolsIgnored

__all__ = ["create_response"]

_KNOWN = frozenset(ResponsesRequest.__struct_fields__)
_ENCODER = msgspec.json.Encoder()


def _headers(headers: dict[str, str], translated: Translated) -> dict[str, str]:
    if translated.ignored_tools:
        headers["x-mia-ignored-tools"] = ",".join(translated.ignored_tools)
    if translated.asked_store:
        headers["x-mia-store"] = "unavailable"
    if translated.unopened_reasoning:
        headers["x-mia-reasoning-unopened"] = str(translated.unopened_reasoning)
    return headers


@post(paths.RESPONSES, operation_id="createResponse", status_code=200, include_in_schema=False)
async def create_response(request: Request[Any, Any, Any], gateway: NamedDependency[Gateway]) -> ASGIResponse:
    wire = await read_request(request, gateway, decode_responses_request, _KNOWN)
    if isinstance(wire, ASGIResponse):
        return wire
    state = request.scope["state"]
    translated = to_internal(
        wire, state["request_id"], hosted=gateway.settings.server.hosted_tools, seal=gateway.reasoning_seal
    )
    if translated.ignored_tools:
        # one event: the log line and the mia_hosted_tools_ignored_total counter
        gateway.bus.emit(ToolsIgnored(request_id=state["request_id"], tools=list(translated.ignored_tools)))
    gen = await start(request, gateway, translated.request)
    if isinstance(gen, ASGIResponse):
        return gen
    sampling = gen.ctx.sampling
    template = msgspec.structs.replace(
        translated.template,
        id=f"resp_{state['request_id'].removeprefix('req_')}",
        created_at=int(time.time()),
        model=gen.model_id,
        # what the generation runs with, not only what was asked (OpenAI echoes the same)
        temperature=sampling.temperature,
        top_p=sampling.top_p,
    )
    if translated.request.stream:
        enc = ResponseStreamEncoder(template, translated)
        return event_stream(gen, enc, _headers(generation_headers(gen), translated))
    try:
        result = await collect(gen, request.receive)
    except ClientGone as exc:
        return error_asgi(exc)
    # a non-stream generation may have moved on to another upstream or model part-way
    state["model_id"] = gen.model_id
    response = to_response(result, translated, msgspec.structs.replace(template, model=gen.model_id))
    headers = _headers(generation_headers(gen), translated)
    return ASGIResponse(body=_ENCODER.encode(response), media_type="application/json", headers=headers)
