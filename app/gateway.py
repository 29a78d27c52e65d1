"""The gateway's collaborators, built once by the app factory and handed to routes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from app.background import BackgroundResponses
from app.settings import Settings
from compat.responses_store import MeteredStore, ResponseStore, open_store
from compat.responses_wire import ReasoningSeal
from pipelines.admission import Admission
from pipelines.assembly import assemble
from pipelines.embedding_service import EmbeddingService
from pipelines.events import EventBus
from pipelines.manager import ModelManager, ProviderFactory
from pipelines.router import ModelRouter
from pipelines.service import GenerationService
from pipelines.tokenization import Tokenization

__all__ = ["Gateway", "build_gateway"]


@dataclass
class Gateway:
    settings: Settings
    bus: EventBus
    registry: CollectorRegistry
    manager: ModelManager
    router: ModelRouter
    service: GenerationService
    admission: Admission
    store: ResponseStore
    """Stored responses (`store: true`, `previous_response_id`)."""
    background: BackgroundResponses
    """The background responses this process runs."""
    embeddings: EmbeddingService
    tokenization: Tokenization
    reasoning_seal: ReasoningSeal = field(default_factory=ReasoningSeal)
    """Seals the reasoning that stateless Responses clients keep (`[server] reasoning_key`)."""
    started: int = field(default_factory=lambda: int(time.time()))
    draining: bool = False
    exposed: CollectorRegistry | None = None
    """What `/metrics` serves when it is not `registry`: under `--workers N`, the sum of
    every worker's series."""


def build_gateway(
    settings: Settings,
    *,
    bus: EventBus | None = None,
    registry: CollectorRegistry | None = None,
    provider_factory: ProviderFactory | None = None,
    current_date: str | None = None,
    store: ResponseStore | None = None,
) -> Gateway:
    parts = assemble(
        settings.models,
        settings.presets,
        settings.server,
        bus=bus,
        provider_factory=provider_factory,
        current_date=current_date,
    )
    metered = MeteredStore(store or open_store(settings.storage), parts.bus)
    return Gateway(
        settings=settings,
        bus=parts.bus,
        registry=registry or CollectorRegistry(auto_describe=True),
        manager=parts.manager,
        router=parts.router,
        service=parts.service,
        admission=parts.admission,
        store=metered,
        background=BackgroundResponses(parts.service, metered),
        reasoning_seal=ReasoningSeal(settings.server.reasoning_key),
        embeddings=parts.embeddings,
        tokenization=parts.tokenization,
    )
