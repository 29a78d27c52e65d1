"""POST /v1/responses/input_tokens: how many tokens a Responses request's input (with its
instructions, tools and stored conversation) is on its model, without generating."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, post
from litestar.di import NamedDependency
from litestar.response.base import ASGIResponse

from app import paths
from app.gateway import Gateway
from app.limits import check_limits
from app.routes.generation import read_request
from app.routes.responses import translate
from compat.responses_wire import InputTokenCount, ResponsesRequest, decode_responses_request
from pipelines.errors import Unsupported

__all__ = ["count_input_tokens"]

_KNOWN = frozenset(ResponsesRequest.__struct_fields__)


@post(paths.RESPONSES_INPUT_TOKENS, operation_id="countInputTokens", status_code=200, include_in_schema=False)
async def count_input_tokens(request: Request[Any, Any, Any], gateway: NamedDependency[Gateway]) -> ASGIResponse:
    wire = await read_request(request, gateway, decode_responses_request, _KNOWN)
    if isinstance(wire, ASGIResponse):
        return wire
    translated = await translate(wire, request.scope["state"]["request_id"], gateway)
    check_limits(translated.request, gateway.settings.server)
    count = await gateway.service.count_prompt(translated.request)
    if count is None:
        raise Unsupported(f"The model '{wire.model}' cannot count tokens before generating.", param="model")
    return ASGIResponse(body=msgspec.json.encode(InputTokenCount(input_tokens=count)), media_type="application/json")
