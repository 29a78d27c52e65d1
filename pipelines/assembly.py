"""The generation side, put together: event bus, model manager, router, pipelines,
admission and the generation service, built from passports, presets and limits.

The app's composition root (`app/gateway.py`) calls this with its settings; the pipeline
tests call it directly, with no HTTP layer around it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import msgspec
from msgspec import Meta

from pipelines.admission import Admission
from pipelines.config import ModelConfig, Preset
from pipelines.embedding_service import EmbeddingService
from pipelines.events import EventBus
from pipelines.formats import ChatTemplatePipeline, CompletionPipeline, HarmonyPipeline
from pipelines.manager import ModelManager, ProviderFactory
from pipelines.pipeline import GenerationPipeline, PipelineConfig
from pipelines.providers.factory import DefaultProviders
from pipelines.router import ModelRouter
from pipelines.service import COMPLETION, GenerationService, admission_events
from pipelines.tokenization import Tokenization

__all__ = ["GenerationLimits", "Generations", "assemble"]


class GenerationLimits(msgspec.Struct, frozen=True, kw_only=True):
    """The gateway-wide settings the generation side reads (keys of `[server]`)."""

    cache_dir: str = "~/.cache/mia-gateway"
    """Where assembled model files and checksum records live."""
    max_output_tokens: Annotated[int, Meta(ge=1)] | None = None
    """The gateway-wide output cap (the `gateway` cap source)."""
    request_timeout: Annotated[float, Meta(gt=0)] | None = 600.0
    """Per-generation deadline in seconds; past it the generation is cancelled (`timeout`)."""
    queue_size: Annotated[int, Meta(ge=0)] = 16
    """Requests that may wait per model once its slots are busy; more get 429."""
    queue_max_wait: Annotated[float, Meta(gt=0)] = 120.0
    """Seconds a request may wait in the queue before a 503."""
    load_timeout: Annotated[float, Meta(gt=0)] = 120.0
    """Seconds a request waits for its model to load before a 503."""


@dataclass
class Generations:
    """The collaborators of the generation side, built once."""

    bus: EventBus
    manager: ModelManager
    router: ModelRouter
    service: GenerationService
    admission: Admission
    embeddings: EmbeddingService
    tokenization: Tokenization


def assemble(
    models: Iterable[ModelConfig],
    presets: Mapping[str, Preset],
    limits: GenerationLimits,
    *,
    bus: EventBus | None = None,
    provider_factory: ProviderFactory | None = None,
    current_date: str | None = None,
) -> Generations:
    models = list(models)
    bus = bus or EventBus()
    factory = provider_factory or DefaultProviders(cache_dir=Path(limits.cache_dir).expanduser(), bus=bus)
    manager = ModelManager(models, bus, factory, load_timeout=limits.load_timeout)
    config = PipelineConfig(
        presets=dict(presets), gateway_max_output_tokens=limits.max_output_tokens, current_date=current_date
    )
    # A model's `format` selects its pipeline.
    pipelines: dict[str, GenerationPipeline] = {
        "harmony": HarmonyPipeline(config),
        "chat": ChatTemplatePipeline(config),
    }
    router = ModelRouter(manager, {fmt: type(p) for fmt, p in pipelines.items()})
    # ...and a raw prompt (a legacy completion) the completion pipeline, whatever the format.
    pipelines[COMPLETION] = CompletionPipeline(config)
    admission = Admission(queue_size=limits.queue_size, max_wait=limits.queue_max_wait, on_change=admission_events(bus))
    service = GenerationService(router, pipelines, admission, bus, timeout=limits.request_timeout)
    embeddings = EmbeddingService(router, admission, bus)
    # The tokenizer endpoints' default model (vLLM serves one): the first of the settings.
    tokenization = Tokenization(router, pipelines, models[0].id if models else "")
    return Generations(
        bus=bus,
        manager=manager,
        router=router,
        service=service,
        admission=admission,
        embeddings=embeddings,
        tokenization=tokenization,
    )
