"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from app.errors import error_response
from app.gateway import Gateway
from compat.refusals import Draining, NotReady

__all__ = ["health", "ready"]

_OK = b'{"status":"ok"}'


@get("/health", operation_id="health", include_in_schema=False)
async def health() -> Response[bytes]:
    return Response(content=_OK, media_type="application/json")


@get("/ready", operation_id="ready", include_in_schema=False)
async def ready(request: Request[Any, Any, Any]) -> Response[bytes]:
    gateway: Gateway = request.app.state.gateway
    if gateway.draining:
        return error_response(Draining())
    if not gateway.manager.ready:
        loading = [e.config.id for e in gateway.manager.entries if e.config.preload and e.provider.status != "loaded"]
        return error_response(NotReady(loading))
    return Response(content=b'{"status":"ready"}', media_type="application/json")
