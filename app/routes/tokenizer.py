"""The tokenizer endpoints as vLLM serves them (`/tokenize`, `/detokenize`,
`/tokenizer_info`, beside `/v1`): lm-eval's API models take their tokenizer from them by
default. `model` may be left out: the gateway's first model answers."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery
from litestar.response.base import ASGIResponse

from app import paths
from app.gateway import Gateway
from app.routes.generation import read_request
from compat.tokenizer_wire import (
    DetokenizeRequest,
    DetokenizeResponse,
    TokenizeRequest,
    TokenizeResponse,
    chat_request,
    decode_detokenize_request,
    decode_tokenize_request,
    info_of,
)

__all__ = ["detokenize", "tokenize", "tokenizer_info"]

_ENCODER = msgspec.json.Encoder()


def _json(value: msgspec.Struct) -> ASGIResponse:
    return ASGIResponse(body=_ENCODER.encode(value), media_type="application/json")


@post(paths.TOKENIZE, operation_id="tokenize", status_code=200, include_in_schema=False)
async def tokenize(request: Request[Any, Any, Any], gateway: NamedDependency[Gateway]) -> ASGIResponse:
    wire = await read_request(request, gateway, decode_tokenize_request, frozenset(TokenizeRequest.__struct_fields__))
    if isinstance(wire, ASGIResponse):
        return wire
    tokens = gateway.tokenization
    strs = bool(wire.return_token_strs)
    if wire.prompt is not None:
        add = wire.add_special_tokens if wire.add_special_tokens is not None else True
        out = await tokens.tokenize(wire.model, wire.prompt, add_special=add, strs=strs)
    else:
        req = chat_request(wire, wire.model or tokens.default_model, request.scope["state"]["request_id"])
        out = await tokens.tokenize_request(req, strs=strs)
    return _json(
        TokenizeResponse(
            count=len(out.tokens), max_model_len=out.max_model_len, tokens=out.tokens, token_strs=out.token_strs
        )
    )


@post(paths.DETOKENIZE, operation_id="detokenize", status_code=200, include_in_schema=False)
async def detokenize(request: Request[Any, Any, Any], gateway: NamedDependency[Gateway]) -> ASGIResponse:
    wire = await read_request(
        request, gateway, decode_detokenize_request, frozenset(DetokenizeRequest.__struct_fields__)
    )
    if isinstance(wire, ASGIResponse):
        return wire
    return _json(DetokenizeResponse(prompt=await gateway.tokenization.detokenize(wire.model, wire.tokens)))


@get(paths.TOKENIZER_INFO, operation_id="tokenizerInfo", include_in_schema=False)
async def tokenizer_info(gateway: NamedDependency[Gateway], model: FromQuery[str | None] = None) -> ASGIResponse:
    return _json(info_of(await gateway.tokenization.info(model)))
