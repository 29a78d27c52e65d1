"""A local GGUF model through llama-cpp-python: one provider (provider.py) over a
continuous-batching engine (engine.py, sequences.py, prefix.py), with prompt reading (prompt.py),
structured output (grammar.py), sampler chains (sampler.py) and the one import of
llama_cpp with its ctypes helpers (runtime.py)."""

from __future__ import annotations

from pipelines.providers.llama.provider import LlamaProvider

__all__ = ["LlamaProvider"]
