"""Builds the provider a passport names."""

from __future__ import annotations

from pathlib import Path

from pipelines.config import ModelConfig
from pipelines.providers.base import Provider
from pipelines.providers.llama_cpp import LlamaCppProvider
from pipelines.providers.replay import ReplayProvider
from pipelines.providers.stub import StubProvider

__all__ = ["ProviderFactory"]


class ProviderFactory:
    """`factory(config) -> Provider`, with the shared collaborators providers need."""

    def __init__(self, *, cache_dir: Path) -> None:
        self._cache_dir = cache_dir

    def __call__(self, config: ModelConfig) -> Provider:
        if config.provider == "llama_cpp":
            return LlamaCppProvider(config, cache_dir=self._cache_dir)
        if config.provider == "replay":
            return ReplayProvider(config)
        if config.provider == "openai_http":
            return StubProvider(config, reason="openai_http provider is not available in this build")
        return StubProvider(config)
