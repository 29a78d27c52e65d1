"""The lightweight pipeline: chat-template models (any GGUF with its own template)."""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING

from pipelines.errors import Unsupported
from pipelines.pipeline import GenerationPipeline, PipelineContext
from pipelines.providers.base import Prompt, Provider
from pipelines.types import Delta, DeltaKind, GenerationRequest, Piece

if TYPE_CHECKING:
    from pipelines.sampling import SamplingSnapshot

__all__ = ["LightweightPipeline"]


class LightweightPipeline(GenerationPipeline):
    """Messages go to the provider as they are; it applies the model's chat template.
    Everything the model says is `content`."""

    name = "lightweight"

    def check_supported(self, req: GenerationRequest, provider: Provider) -> None:
        super().check_supported(req, provider)
        if req.tools and req.tool_choice != "none" and not provider.capabilities.get("tool_calls"):
            raise Unsupported(
                f"Model '{req.model}' does not support tool calling; send the request without `tools` "
                "or with tool_choice 'none'.",
                param="tools",
            )

    def build_prompt(self, req: GenerationRequest, sampling: SamplingSnapshot) -> Prompt:
        return Prompt(messages=req.messages, request=req)

    def map_piece(self, ctx: PipelineContext, piece: Piece) -> list[Delta]:
        if ctx.state is None:
            ctx.state = codecs.getincrementaldecoder("utf-8")(errors="replace")
        if piece.special:
            return []
        text = ctx.state.decode(piece.data)
        logprobs = (piece.logprob,) if piece.logprob is not None else ()
        if not text and not logprobs:
            return []
        kind = DeltaKind.REASONING if piece.channel == "reasoning" else DeltaKind.CONTENT
        return [Delta(kind=kind, text=text, logprobs=logprobs)]

    def flush(self, ctx: PipelineContext) -> list[Delta]:
        if ctx.state is None:
            return []
        text = ctx.state.decode(b"", final=True)
        return [Delta(kind=DeltaKind.CONTENT, text=text)] if text else []
