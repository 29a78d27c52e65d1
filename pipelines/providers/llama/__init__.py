"""A local GGUF model through llama-cpp-python: one provider (provider.py) over a
continuous-batching engine (engine.py, sequences.py, prefix.py), with prompt reading (prompt.py),
structured output (grammar.py), sampler chains (sampler.py) and the one import of
llama_cpp with its ctypes helpers (runtime.py); embedding models get a provider of their
own over an embedding context (embedding.py). Both open their GGUF through weights.py."""

from __future__ import annotations

from pipelines.providers.llama.embedding import LlamaEmbeddingProvider
from pipelines.providers.llama.provider import LlamaProvider

__all__ = ["LlamaEmbeddingProvider", "LlamaProvider"]
