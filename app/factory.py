"""The app factory: assembles Litestar from the gateway's collaborators (no globals)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from litestar import Litestar
from litestar.di import Provide

from app import paths
from app.auth import ApiKeyMiddleware, load_keys
from app.context import RequestContextMiddleware
from app.direct_routes import DirectRoutes, Route
from app.errors import exception_handlers
from app.gateway import Gateway
from app.openapi import openapi_route
from app.routes.chat import chat_completions
from app.routes.completions import create_completion
from app.routes.embeddings import create_embedding
from app.routes.health import health, ready
from app.routes.input_tokens import count_input_tokens
from app.routes.metrics import metrics
from app.routes.models import get_model, list_models, unload_model
from app.routes.responses import create_response
from app.routes.stored_responses import cancel_response, delete_response, list_input_items, retrieve_response
from app.routes.tokenizer import detokenize, tokenize, tokenizer_info
from compat.responses_store import StorageUnavailable
from pipelines.upstream import run_probes

if TYPE_CHECKING:
    from litestar.types import ASGIApp

__all__ = ["DIRECT", "create_app", "create_litestar"]

_log = logging.getLogger(__name__)


DIRECT: dict[str, Route] = {
    paths.CHAT_COMPLETIONS: chat_completions,
    paths.COMPLETIONS: create_completion,
    paths.RESPONSES: create_response,
    paths.EMBEDDINGS: create_embedding,
}
"""The POST routes served without Litestar (`app.direct_routes`)."""


def create_app(gateway: Gateway) -> ASGIApp:
    """The ASGI app: Litestar beside the direct generation routes, wrapped so that every
    response (unknown routes included) passes the request-id and auth layers."""
    app: ASGIApp = DirectRoutes(create_litestar(gateway), gateway, DIRECT)
    server = gateway.settings.server
    keys = load_keys(server)
    if keys:
        app = ApiKeyMiddleware(app, keys, protect_metrics=server.metrics_require_key)
    return RequestContextMiddleware(app, gateway.bus)


def create_litestar(gateway: Gateway) -> Litestar:
    server = gateway.settings.server

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # Load in the background: /health answers at once, /ready says when models are in.
        loader = asyncio.create_task(gateway.manager.load_all())
        loader.add_done_callback(_settle)
        idle = asyncio.create_task(_idle_unloader(gateway))
        # Upstream health probes; the upstreams' clients open and close with their models.
        probes = asyncio.create_task(run_probes(e.provider for e in gateway.manager.entries))
        await gateway.store.open()
        evictor = asyncio.create_task(_evictor(gateway))
        try:
            yield
        finally:
            gateway.draining = True
            idle.cancel()
            probes.cancel()
            evictor.cancel()
            loader.cancel()
            with contextlib.suppress(BaseException):
                await loader
            await gateway.service.drain(server.shutdown_grace)
            await gateway.background.stop()
            await gateway.manager.shutdown()
            await gateway.store.close()

    return Litestar(
        route_handlers=[
            retrieve_response,
            delete_response,
            list_input_items,
            cancel_response,
            count_input_tokens,
            tokenize,
            detokenize,
            tokenizer_info,
            list_models,
            get_model,
            unload_model,
            health,
            ready,
            metrics,
            openapi_route,
        ],
        exception_handlers=exception_handlers,  # type: ignore[arg-type]
        lifespan=[lifespan],
        dependencies={"gateway": _provider(gateway)},
        openapi_config=None,
        request_max_body_size=server.max_body_bytes,
        logging_config=None,
    )


def _provider(gateway: Gateway) -> Provide:
    """How routes get the gateway: a handler parameter `gateway: Gateway`."""

    def provide_gateway() -> Gateway:
        return gateway

    return Provide(provide_gateway, use_cache=True, sync_to_thread=False)


def _settle(_: object) -> None:
    """Once the models are in, what the process holds lives as long as it does: moved out
    of the collector's reach (`gc.freeze`), a full collection no longer walks the ~85,000
    objects of the modules and models on every run. Under load those runs took 20-100 ms
    each, stalling every request in flight (the p99 at 32 connections)."""
    gc.collect()
    gc.freeze()


async def _idle_unloader(gateway: Gateway) -> None:
    keeps = [m.keep_alive_seconds for m in gateway.settings.models if m.keep_alive_seconds]
    if not keeps:
        return
    period = max(0.5, min(keeps) / 4)
    while True:
        await asyncio.sleep(period)
        try:
            await gateway.manager.unload_idle()
        except Exception:
            _log.exception("idle unload failed")


async def _evictor(gateway: Gateway) -> None:
    """Retention and the size bound, at start and every `evict_interval` seconds (reads
    never see an expired response in between). A store that is down is tried again next time."""
    while True:
        try:
            gone = await gateway.store.evict()
        except StorageUnavailable:
            pass  # the store logged it
        except Exception:
            _log.exception("evicting stored responses failed")
        else:
            if gone:
                _log.info("evicted %d stored responses", gone)
        await asyncio.sleep(gateway.settings.storage.evict_interval)
