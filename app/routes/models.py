"""GET /v1/models and GET /v1/models/{model}: OpenAI's fields plus honesty fields."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from app import paths
from app.gateway import Gateway
from compat.responses import ModelCard, ModelList

if TYPE_CHECKING:
    from pipelines.manager import ModelEntry

__all__ = ["get_model", "list_models", "unload_model"]

_ENCODER = msgspec.json.Encoder()


def model_card(gw: Gateway, entry: ModelEntry) -> ModelCard:
    provider = entry.provider
    config = entry.config
    stub, stub_reason = provider.stub, provider.stub_reason if provider.stub else None
    if not stub and entry.status == "unloaded" and (failure := provider.foreseen_failure()) is not None:
        # Never loaded (or unloaded) and its weights are not there: its next load falls back
        # to the stub (ADR-0015), so the card says so now, not after the first request.
        stub, stub_reason = True, str(failure)
    return ModelCard(
        id=config.id,
        created=gw.started,
        owned_by="mia-gateway",
        stub=stub,
        stub_reason=stub_reason,
        role=config.role,
        pipeline="embedding" if config.embedding else gw.router.pipeline_class(entry).name,
        status=entry.status,
        provider=provider.kind,
        aliases=list(config.aliases),
        context_length=config.context_length,
        max_output_tokens=config.max_output_tokens,
        capabilities=provider.capabilities,
        upstreams=provider.upstream_states(),
        placement=provider.placement(),
    )


def _json(obj: Any, status: int = 200) -> Response[bytes]:
    return Response(content=_ENCODER.encode(obj), status_code=status, media_type="application/json")


@get(paths.MODELS, operation_id="listModels", include_in_schema=False)
async def list_models(gateway: NamedDependency[Gateway]) -> Response[bytes]:
    return _json(ModelList(data=[model_card(gateway, e) for e in gateway.manager.entries]))


@get(paths.MODEL_ROUTE, operation_id="retrieveModel", include_in_schema=False)
async def get_model(gateway: NamedDependency[Gateway], model: FromPath[str]) -> Response[bytes]:
    entry = gateway.router.entry(model.lstrip("/"))  # unknown: 404 model_not_found
    return _json(model_card(gateway, entry))


@post(paths.UNLOAD_ROUTE, operation_id="unloadModel", status_code=200, include_in_schema=False)
async def unload_model(gateway: NamedDependency[Gateway], model: FromPath[str]) -> Response[bytes]:
    """Unloads a loaded model (`ModelUnloaded reason=explicit_unload`); it reloads on next use."""
    entry = gateway.router.entry(model.lstrip("/"))  # unknown: 404 model_not_found
    unloaded = await gateway.manager.unload(entry.config.id, "explicit_unload")
    return _json({"id": entry.config.id, "unloaded": unloaded, "status": entry.status})
