"""GET /metrics: the injected registry in Prometheus text, or OpenMetrics on request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Request, Response, get
from prometheus_client import exposition

if TYPE_CHECKING:
    from app.gateway import Gateway

__all__ = ["metrics"]


@get("/metrics", operation_id="metrics", include_in_schema=False)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    gw: Gateway = request.app.state.gateway
    encoder, content_type = exposition.choose_encoder(request.headers.get("accept", ""))
    return Response(content=encoder(gw.registry), media_type=content_type)
