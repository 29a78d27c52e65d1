"""Harmony models (gpt-oss): the request is rendered into Harmony, and the model's tokens
are parsed into its channels (`pipelines/harmony/decoder.py`)."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from pipelines.errors import Unsupported
from pipelines.harmony.decoder import HarmonyDecoder
from pipelines.harmony.render import render_prompt, tool_address
from pipelines.pipeline import GenerationPipeline, TokenDecoder
from pipelines.providers.base import Prompt, Provider
from pipelines.types import GenerationRequest, Piece

if TYPE_CHECKING:
    from pipelines.sampling import SamplingSnapshot

__all__ = ["HarmonyPipeline"]


def _forced_header(address: str) -> list[Piece]:
    """The assistant header that commits the model to calling the function at `address` (tool_choice)."""
    return [
        Piece(data=b"<|channel|>", special=True, tokens=0),
        Piece(data=f"commentary to={address} ".encode(), tokens=0),
        Piece(data=b"<|constrain|>", special=True, tokens=0),
        Piece(data=b"json", tokens=0),
        Piece(data=b"<|message|>", special=True, tokens=0),
    ]


class HarmonyPipeline(GenerationPipeline):
    # The public name (events, metrics, model cards) predates the class's: it stays.
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

    def build_prompt(self, req: GenerationRequest, sampling: SamplingSnapshot, provider: Provider) -> Prompt:
        tools = req.tools if req.tool_choice != "none" else ()
        date = self.config.current_date or datetime.date.today().isoformat()
        rendered = render_prompt(
            req.messages, tools=tools, reasoning_effort=sampling.reasoning_effort, current_date=date
        )
        text = str(rendered) + "".join(p.data.decode() for p in self.opening(req))
        return Prompt(text=text, plain=rendered.plain, request=req)

    def new_decoder(self, req: GenerationRequest, provider: Provider) -> TokenDecoder:
        return HarmonyDecoder()

    def opening(self, req: GenerationRequest) -> list[Piece]:
        forced = self._forced_tool(req)
        return _forced_header(tool_address(forced, req.tools)) if forced is not None else []
