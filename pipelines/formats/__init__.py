"""The pipelines, one per model output format (`format` in a model's passport selects it):
Harmony for gpt-oss models, the model's own chat template for any other GGUF or upstream;
legacy completions (a raw prompt) take the completion pipeline whatever the format."""

from __future__ import annotations

from pipelines.formats.chat import ChatTemplatePipeline
from pipelines.formats.completion import CompletionPipeline
from pipelines.formats.harmony import HarmonyPipeline

__all__ = ["ChatTemplatePipeline", "CompletionPipeline", "HarmonyPipeline"]
