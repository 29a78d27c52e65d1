"""The gateway's collaborators, built once by the app factory and handed to routes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from app.settings import Settings
from pipelines.admission import Admission
from pipelines.assembly import assemble
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
    tokenization: Tokenization
    started: int = field(default_factory=lambda: int(time.time()))
    draining: bool = False


def build_gateway(
    settings: Settings,
    *,
    bus: EventBus | None = None,
    registry: CollectorRegistry | None = None,
    provider_factory: ProviderFactory | None = None,
    current_date: str | None = None,
) -> Gateway:
    parts = assemble(
        settings.models,
        settings.presets,
        settings.server,
        bus=bus,
        provider_factory=provider_factory,
        current_date=current_date,
    )
    return Gateway(
        settings=settings,
        bus=parts.bus,
        registry=registry or CollectorRegistry(auto_describe=True),
        manager=parts.manager,
        router=parts.router,
        service=parts.service,
        admission=parts.admission,
        tokenization=parts.tokenization,
    )
