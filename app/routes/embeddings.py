"""POST /v1/embeddings: vectors from an embedding model, as numbers or base64."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request
from litestar.response.base import ASGIResponse

from app.answers import Answer, JsonAnswer
from app.errors import error_asgi
from app.gateway import Gateway
from app.limits import check_embedding_limits
from app.routes.generation import read_request
from compat.embeddings import EmbeddingsRequest, decode_embeddings_request, to_embedding_list, to_internal
from compat.refusals import Draining

__all__ = ["create_embedding"]

_KNOWN = frozenset(EmbeddingsRequest.__struct_fields__)
_ENCODER = msgspec.json.Encoder()


async def create_embedding(request: Request[Any, Any, Any], gateway: Gateway) -> Answer:
    wire = await read_request(request, gateway, decode_embeddings_request, _KNOWN)
    if isinstance(wire, ASGIResponse):
        return wire
    state = request.scope["state"]
    req = to_internal(wire, state["request_id"])
    check_embedding_limits(req, gateway.settings.server)
    if gateway.draining:
        return error_asgi(Draining())
    result = await gateway.embeddings.embed(req)
    state["model_id"] = result.model_id
    body = _ENCODER.encode(to_embedding_list(result, wire.encoding_format))
    return JsonAnswer(body, {"x-mia-model": result.model_id})
