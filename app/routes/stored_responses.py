"""Stored responses, read back and deleted: `GET` and `DELETE /v1/responses/{id}`, and
`GET /v1/responses/{id}/input_items` (paged as OpenAI pages lists). Unknown, expired,
evicted and deleted responses are all the same 404; a store that is down is a 503 with
Retry-After (`StorageUnavailable`, through the error handlers)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, delete, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response.base import ASGIResponse

from app import paths
from app.gateway import Gateway
from compat.responses_store import ResponseDeleted, ResponseNotFound, page, page_query

__all__ = ["delete_response", "list_input_items", "retrieve_response"]

_JSON = "application/json"


@get(paths.RESPONSE_ROUTE, operation_id="getResponse", include_in_schema=False)
async def retrieve_response(response_id: FromPath[str], gateway: NamedDependency[Gateway]) -> ASGIResponse:
    stored = await gateway.store.get(response_id)
    if stored is None:
        raise ResponseNotFound(response_id)
    return ASGIResponse(body=stored.response, media_type=_JSON)


@delete(paths.RESPONSE_ROUTE, operation_id="deleteResponse", status_code=200, include_in_schema=False)
async def delete_response(response_id: FromPath[str], gateway: NamedDependency[Gateway]) -> ASGIResponse:
    if not await gateway.store.delete(response_id):
        raise ResponseNotFound(response_id)
    return ASGIResponse(body=msgspec.json.encode(ResponseDeleted(id=response_id)), media_type=_JSON)


@get(paths.RESPONSE_INPUT_ITEMS_ROUTE, operation_id="listInputItems", include_in_schema=False)
async def list_input_items(
    request: Request[Any, Any, Any], response_id: FromPath[str], gateway: NamedDependency[Gateway]
) -> ASGIResponse:
    query = page_query(request.query_params)
    stored = await gateway.store.input_items(response_id)
    if stored is None:
        raise ResponseNotFound(response_id)
    return ASGIResponse(body=msgspec.json.encode(page(stored, query)), media_type=_JSON)
