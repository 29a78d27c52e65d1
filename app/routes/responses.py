"""POST /v1/responses, streamed (SSE) and not: the Responses wire over the same
generation as chat completions.

A response is stored unless the client says `store: false` (OpenAI's default is to store):
committed before the client hears it completed (the last event of a stream, or the body of
a non-stream answer), so a response reported completed can be read back and continued. A
`previous_response_id` puts the stored conversation before the request's input; an unknown,
expired or deleted one is a 404 naming it. `background: true` answers `queued` at once and
runs in this process (app/background.py). Hosted tools the gateway cannot run are left out
of the prompt and named in `x-mia-ignored-tools` (and a `ToolsIgnored` event: a log line and
a counter), so that a client that always sends them keeps working; `[server] hosted_tools =
"refuse"` makes them a 400."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Request
from litestar.response.base import ASGIResponse

from app.answers import Answer, JsonAnswer
from app.background import started
from app.errors import error_asgi
from app.gateway import Gateway
from app.limits import check_limits
from app.routes.generation import collect, event_stream, generation_headers, read_request, start
from compat.refusals import ClientGone, Draining
from compat.responses_store import conversation, input_items, record
from compat.responses_wire import (
    ResponseObject,
    ResponsesRequest,
    ResponseStreamEncoder,
    Translated,
    decode_responses_request,
    new_item_id,
    to_internal,
    to_response,
)
from pipelines.errors import Unsupported
from pipelines.events import ToolsIgnored

__all__ = ["create_response", "translate"]

_KNOWN = frozenset(ResponsesRequest.__struct_fields__)
_ENCODER = msgspec.json.Encoder()


def _headers(headers: dict[str, str], translated: Translated) -> dict[str, str]:
    if translated.ignored_tools:
        headers["x-mia-ignored-tools"] = ",".join(translated.ignored_tools)
    if translated.unopened_reasoning:
        headers["x-mia-reasoning-unopened"] = str(translated.unopened_reasoning)
    return headers


async def translate(wire: ResponsesRequest, request_id: str, gateway: Gateway) -> Translated:
    """The request, with the conversation its `previous_response_id` stands for (read from
    the store: a 404 when it is not there, a 503 when the store is down)."""
    history = await conversation(gateway.store, wire.previous_response_id) if wire.previous_response_id else []
    return to_internal(
        wire, request_id, hosted=gateway.settings.server.hosted_tools, history=history, seal=gateway.reasoning_seal
    )


async def create_response(request: Request[Any, Any, Any], gateway: Gateway) -> Answer:
    wire = await read_request(request, gateway, decode_responses_request, _KNOWN)
    if isinstance(wire, ASGIResponse):
        return wire
    state = request.scope["state"]
    translated = await translate(wire, state["request_id"], gateway)
    if translated.ignored_tools:
        # one event: the log line and the mia_hosted_tools_ignored_total counter
        gateway.bus.emit(ToolsIgnored(request_id=state["request_id"], tools=list(translated.ignored_tools)))
    stored = translated.asked_store
    items = input_items(wire) if stored else b""
    template = msgspec.structs.replace(
        translated.template,
        # random, never the request id (a client may choose that): the id is what reads it back
        id=new_item_id("resp"),
        created_at=int(time.time()),
        store=stored,
    )
    if wire.background:
        return await _background(request, gateway, wire, translated, template, items)
    gen = await start(request, gateway, translated.request)
    if isinstance(gen, ASGIResponse):
        return gen
    template = started(template, gen)
    if translated.request.stream:
        enc = ResponseStreamEncoder(template, translated)

        async def commit() -> None:
            assert enc.response is not None
            await gateway.store.put(record(enc.response, items))

        return event_stream(gen, enc, _headers(generation_headers(gen), translated), commit if stored else None)
    try:
        result = await collect(gen, request.receive)
    except ClientGone as exc:
        return error_asgi(exc)
    # a non-stream generation may have moved on to another upstream or model part-way
    state["model_id"] = gen.model_id
    response = to_response(result, translated, started(template, gen))
    if stored:
        await gateway.store.put(record(response, items))
    headers = _headers(generation_headers(gen), translated)
    return JsonAnswer(_ENCODER.encode(response), headers)


async def _background(
    request: Request[Any, Any, Any],
    gateway: Gateway,
    wire: ResponsesRequest,
    translated: Translated,
    template: ResponseObject,
    items: bytes,
) -> Answer:
    """`background: true`: refused as a generation would be (limits, model, draining), else
    stored `queued` and answered at once; the run goes on in this process (app/background.py)."""
    if not translated.asked_store:
        raise Unsupported("A background response is stored: send store: true, or leave it out.", param="store")
    if wire.stream:
        raise Unsupported(
            "Streaming a background response is not supported; poll GET /v1/responses/{id}.", param="stream"
        )
    check_limits(translated.request, gateway.settings.server)
    if gateway.draining:
        return error_asgi(Draining())
    gateway.router.entry(translated.request.model)  # an unknown model is a 404 now, not a failed run
    queued = msgspec.structs.replace(template, status="queued", background=True)
    await gateway.background.submit(queued, translated, items)
    request.scope["state"]["model_id"] = translated.request.model
    return JsonAnswer(_ENCODER.encode(queued))
