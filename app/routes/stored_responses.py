"""Stored responses, read back and deleted: `GET` and `DELETE /v1/responses/{id}`,
`GET /v1/responses/{id}/input_items` (paged as OpenAI pages lists), and
`POST /v1/responses/{id}/cancel` for a background response still queued or in progress. Unknown, expired,
evicted and deleted responses are all the same 404; a store that is down is a 503 with
Retry-After (`StorageUnavailable`, through the error handlers)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response.base import ASGIResponse

from app import paths
from app.background import decode_response
from app.gateway import Gateway
from compat.responses_store import ResponseDeleted, ResponseNotFound, page, page_query
from pipelines.errors import InvalidRequest, Unsupported

__all__ = ["cancel_response", "delete_response", "list_input_items", "retrieve_response"]

_JSON = "application/json"


@get(paths.RESPONSE_ROUTE, operation_id="getResponse", include_in_schema=False)
async def retrieve_response(
    request: Request[Any, Any, Any], response_id: FromPath[str], gateway: NamedDependency[Gateway]
) -> ASGIResponse:
    if request.query_params.get("stream", "false").lower() not in ("false", "0"):
        # OpenAI replays a background response's events; this gateway keeps none
        raise Unsupported("Streaming a stored response is not supported; GET it without stream.", param="stream")
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


@post(paths.RESPONSE_CANCEL_ROUTE, operation_id="cancelResponse", status_code=200, include_in_schema=False)
async def cancel_response(response_id: FromPath[str], gateway: NamedDependency[Gateway]) -> ASGIResponse:
    """A run of this process stops at once; one of another replica (or of a process that went
    away) is stored `cancelled`, which its runner reads within a second. Cancelling a
    cancelled response answers it again; a finished one cannot be cancelled."""
    response = await gateway.background.cancel(response_id)
    if response is None:
        stored = await gateway.store.get(response_id)
        if stored is None:
            raise ResponseNotFound(response_id)
        response = decode_response(stored.response)
        if not response.background:
            raise InvalidRequest(
                "Only background responses can be cancelled.", param="response_id", code="response_not_cancellable"
            )
        if response.status in ("queued", "in_progress"):
            response = msgspec.structs.replace(response, status="cancelled")
            body = msgspec.json.encode(response)
            await gateway.store.put(msgspec.structs.replace(stored, response=body))
        elif response.status != "cancelled":
            raise InvalidRequest(
                f"The response is {response.status}: only a queued or in-progress response can be cancelled.",
                param="response_id",
                code="response_not_cancellable",
            )
    return ASGIResponse(body=msgspec.json.encode(response), media_type=_JSON)
