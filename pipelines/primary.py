"""The primary pipeline: Harmony models (gpt-oss). Renders the request into Harmony,
parses the model's channels at the token level and maps them onto OpenAI's fields."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from pipelines.errors import Unsupported
from pipelines.harmony.mapping import HarmonyDeltaMapper
from pipelines.harmony.render import render_prompt
from pipelines.pipeline import GenerationPipeline, PipelineContext
from pipelines.providers.base import Prompt, Provider
from pipelines.types import Delta, GenerationRequest, Piece, StopReason

if TYPE_CHECKING:
    from pipelines.sampling import SamplingSnapshot

__all__ = ["PrimaryPipeline"]


def _forced_header(name: str) -> list[Piece]:
    """The assistant header that commits the model to calling `name` (tool_choice)."""
    return [
        Piece(data=b"<|channel|>", special=True, tokens=0),
        Piece(data=f"commentary to=functions.{name} ".encode(), tokens=0),
        Piece(data=b"<|constrain|>", special=True, tokens=0),
        Piece(data=b"json", tokens=0),
        Piece(data=b"<|message|>", special=True, tokens=0),
    ]


class PrimaryPipeline(GenerationPipeline):
    name = "primary"

    def _forced_tool(self, req: GenerationRequest) -> str | None:
        forced = req.forced_tool
        if forced is None and req.tool_choice == "required":
            if len(req.tools) != 1:
                raise Unsupported(
                    "tool_choice 'required' with more than one tool is not supported for Harmony models; "
                    "name the function to call, or use 'auto'.",
                    param="tool_choice",
                )
            forced = req.tools[0].name
        return forced

    def check_supported(self, req: GenerationRequest, provider: Provider) -> None:
        super().check_supported(req, provider)
        self._forced_tool(req)

    def build_prompt(self, req: GenerationRequest, sampling: SamplingSnapshot) -> Prompt:
        tools = req.tools if req.tool_choice != "none" else ()
        date = self.config.current_date or datetime.date.today().isoformat()
        rendered = render_prompt(
            req.messages, tools=tools, reasoning_effort=sampling.reasoning_effort, current_date=date
        )
        text = str(rendered)
        forced = self._forced_tool(req)
        if forced is not None:
            text += "".join(p.data.decode() for p in _forced_header(forced))
        return Prompt(text=text, plain=rendered.plain)

    def _open(self, ctx: PipelineContext) -> list[Delta]:
        """Starts the context's parser; the deltas of a call the prompt opened (its id and
        name), which go out before anything the model writes."""
        mapper = ctx.state = HarmonyDeltaMapper()
        forced = self._forced_tool(ctx.request)
        if forced is None:
            return []
        # the prompt already opened the call: the parser must see that header too
        return [delta for piece in _forced_header(forced) for delta in mapper.feed(piece)]

    def _mapper(self, ctx: PipelineContext) -> HarmonyDeltaMapper:
        if ctx.state is None:
            self._open(ctx)
        mapper: HarmonyDeltaMapper = ctx.state
        return mapper

    def map_piece(self, ctx: PipelineContext, piece: Piece) -> list[Delta]:
        opened = self._open(ctx) if ctx.state is None else []
        mapper: HarmonyDeltaMapper = ctx.state
        deltas = mapper.feed(piece)
        if mapper.done_reason == "return":
            ctx.stop_reason = StopReason.EOS
        # After `<|call|>` a real model stops by itself (it is an end-of-generation token);
        # a transcript may go on with a second call, so the provider decides when it ends.
        return opened + deltas if opened else deltas

    def flush(self, ctx: PipelineContext) -> list[Delta]:
        opened = self._open(ctx) if ctx.state is None else []
        mapper: HarmonyDeltaMapper = ctx.state
        deltas = opened + mapper.finish()
        if mapper.tool_calls and ctx.stop_reason is None and ctx.completion_tokens < ctx.params.max_tokens:
            ctx.stop_reason = StopReason.TOOL_CALL
        return deltas

    def reasoning_tokens(self, ctx: PipelineContext) -> int:
        return self._mapper(ctx).reasoning_tokens
