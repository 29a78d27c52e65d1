"""Routing (ADR-0026): a model id or alias -> (provider, pipeline class)."""

from __future__ import annotations

from collections.abc import Mapping

from pipelines.errors import ModelNotFound
from pipelines.manager import ModelEntry, ModelManager
from pipelines.pipeline import GenerationPipeline
from pipelines.providers.base import Provider

__all__ = ["ModelRouter"]


class ModelRouter:
    """Resolves ids and aliases; an unknown id is `ModelNotFound`, never a silent fallback.

    The pipeline class follows the model's format: Harmony models take the primary
    pipeline, chat-template models the lightweight one.
    """

    def __init__(self, manager: ModelManager, pipelines: Mapping[str, type[GenerationPipeline]]) -> None:
        self.manager = manager
        self._pipelines = dict(pipelines)

    def entry(self, model_id: str) -> ModelEntry:
        entry = self.manager.get(model_id)
        if entry is None:
            raise ModelNotFound(f"The model '{model_id}' does not exist.", param="model")
        return entry

    def pipeline_class(self, entry: ModelEntry) -> type[GenerationPipeline]:
        return self._pipelines[entry.config.format]

    def resolve(self, model_id: str) -> tuple[Provider, type[GenerationPipeline]]:
        entry = self.entry(model_id)
        return entry.provider, self.pipeline_class(entry)
