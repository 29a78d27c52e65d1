"""Liveness and readiness."""

from __future__ import annotations

from litestar import Response, get
from litestar.di import NamedDependency

from app import paths
from app.errors import error_response
from app.gateway import Gateway
from compat.refusals import Draining, NotReady

__all__ = ["health", "ready"]

_OK = b'{"status":"ok"}'


@get(paths.HEALTH, operation_id="health", include_in_schema=False)
async def health() -> Response[bytes]:
    return Response(content=_OK, media_type="application/json")


@get(paths.READY, operation_id="ready", include_in_schema=False)
async def ready(gateway: NamedDependency[Gateway]) -> Response[bytes]:
    if gateway.draining:
        return error_response(Draining())
    if not gateway.manager.ready:
        loading = [e.config.id for e in gateway.manager.entries if e.config.preload and e.status != "loaded"]
        return error_response(NotReady(loading))
    return Response(content=b'{"status":"ready"}', media_type="application/json")
