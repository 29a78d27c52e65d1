"""Builds the provider a passport names."""

from __future__ import annotations

from pathlib import Path

from pipelines.config import LlamaModelConfig, ModelConfig, ReplayModelConfig, UpstreamModelConfig
from pipelines.events import EventBus
from pipelines.providers.base import Provider
from pipelines.providers.llama import LlamaEmbeddingProvider, LlamaProvider
from pipelines.providers.openai_http import OpenAIHTTPProvider
from pipelines.providers.replay import ReplayProvider
from pipelines.providers.stub import StubProvider

__all__ = ["DefaultProviders"]


class DefaultProviders:
    """The gateway's provider factory (`pipelines.manager.ProviderFactory`):
    `providers(config) -> Provider`, with the shared collaborators providers need (the
    event bus: llama models report how they read prompts, upstream pools their requests
    and health)."""

    def __init__(self, *, cache_dir: Path, bus: EventBus | None = None) -> None:
        self._cache_dir = cache_dir
        self._bus = bus or EventBus()

    def __call__(self, config: ModelConfig) -> Provider:
        if isinstance(config, LlamaModelConfig) and config.embedding:
            return LlamaEmbeddingProvider(config, cache_dir=self._cache_dir)
        if isinstance(config, LlamaModelConfig):
            return LlamaProvider(config, cache_dir=self._cache_dir, bus=self._bus)
        if isinstance(config, ReplayModelConfig):
            return ReplayProvider(config)
        if isinstance(config, UpstreamModelConfig):
            return OpenAIHTTPProvider(config, bus=self._bus)
        return StubProvider(config)
