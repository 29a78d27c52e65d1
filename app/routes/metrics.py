"""GET /metrics: the injected registry (or the workers' sum) in Prometheus text, or OpenMetrics on request."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from prometheus_client import exposition

from app import paths
from app.gateway import Gateway

__all__ = ["metrics"]


@get(paths.METRICS, operation_id="metrics", include_in_schema=False)
async def metrics(request: Request[Any, Any, Any], gateway: NamedDependency[Gateway]) -> Response[bytes]:
    encoder, content_type = exposition.choose_encoder(request.headers.get("accept", ""))
    return Response(content=encoder(gateway.exposed or gateway.registry), media_type=content_type)
