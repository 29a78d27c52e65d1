"""Liveness and readiness."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Request, Response, get

from app.errors import error_response
from compat.errors import http_error

if TYPE_CHECKING:
    from app.gateway import Gateway

__all__ = ["health", "ready"]

_OK = b'{"status":"ok"}'


@get("/health", operation_id="health", include_in_schema=False)
async def health() -> Response[bytes]:
    return Response(content=_OK, media_type="application/json")


@get("/ready", operation_id="ready", include_in_schema=False)
async def ready(request: Request[Any, Any, Any]) -> Response[bytes]:
    gw: Gateway = request.app.state.gateway
    if gw.draining:
        return error_response(http_error(503, "The gateway is shutting down.", code="shutting_down"))
    if not gw.manager.ready:
        loading = [e.config.id for e in gw.manager.entries if e.config.preload and e.provider.status != "loaded"]
        return error_response(http_error(503, f"Models still loading: {', '.join(loading)}.", code="not_ready"))
    return Response(content=b'{"status":"ready"}', media_type="application/json")
