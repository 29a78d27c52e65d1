"""The pipelines, one per model output format (`format` in a model's passport selects it):
Harmony for gpt-oss models, the model's own chat template for any other GGUF or upstream."""

from __future__ import annotations

from pipelines.formats.chat import ChatTemplatePipeline
from pipelines.formats.harmony import HarmonyPipeline

__all__ = ["ChatTemplatePipeline", "HarmonyPipeline"]
