"""The gateway's collaborators, built once by the app factory and handed to routes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry

from app.settings import Settings
from pipelines.admission import Admission
from pipelines.events import EventBus
from pipelines.lightweight import LightweightPipeline
from pipelines.manager import ModelManager, ProviderFactory
from pipelines.pipeline import GenerationPipeline, PipelineConfig
from pipelines.primary import PrimaryPipeline
from pipelines.providers.factory import DefaultProviders
from pipelines.router import ModelRouter
from pipelines.service import GenerationService, admission_events

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
    bus = bus or EventBus()
    registry = registry or CollectorRegistry(auto_describe=True)
    server = settings.server
    factory = provider_factory or DefaultProviders(cache_dir=Path(server.cache_dir).expanduser(), bus=bus)
    manager = ModelManager(settings.models, bus, factory, load_timeout=server.load_timeout)
    config = PipelineConfig(
        presets=dict(settings.presets), gateway_max_output_tokens=server.max_output_tokens, current_date=current_date
    )
    pipelines: dict[str, GenerationPipeline] = {
        "harmony": PrimaryPipeline(config),
        "chat": LightweightPipeline(config),
    }
    router = ModelRouter(manager, {fmt: type(p) for fmt, p in pipelines.items()})
    admission = Admission(queue_size=server.queue_size, max_wait=server.queue_max_wait, on_change=admission_events(bus))
    service = GenerationService(router, pipelines, admission, bus, timeout=server.request_timeout)
    return Gateway(
        settings=settings,
        bus=bus,
        registry=registry,
        manager=manager,
        router=router,
        service=service,
        admission=admission,
    )
