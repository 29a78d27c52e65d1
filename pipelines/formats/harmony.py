"""Harmony models (gpt-oss): the request is rendered into Harmony, and the model's tokens
are parsed into its channels (`pipelines/harmony/decoder.py`).

A tool_choice that forces a call opens it in the prompt: with one function to call (named,
or `required` with one tool) the whole header up to its arguments; with `required` and
several tools, the header up to `to=functions.`, for a provider that constrains decoding
(llama.cpp, with a grammar) to finish with a declared name (a forced call to a function of
a namespace is addressed `NAMESPACE.NAME`). A provider that cannot
(a replay, the stub) gets the prompt unopened and answers as it does.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from pipelines.harmony.decoder import HarmonyDecoder
from pipelines.harmony.render import render_prompt, tool_address
from pipelines.pipeline import GenerationPipeline, TokenDecoder
from pipelines.providers.base import OpenedCall, Prompt, Provider
from pipelines.types import GenerationRequest, Piece

if TYPE_CHECKING:
    from pipelines.sampling import SamplingSnapshot

__all__ = ["HarmonyPipeline"]


def _call_header(call: OpenedCall | None) -> list[Piece]:
    """The assistant header a prompt ends with when it opened `call`."""
    if call is None:
        return []
    if not call.named:
        return [
            Piece(data=b"<|channel|>", special=True, tokens=0),
            Piece(data=b"commentary to=functions.", tokens=0),
        ]
    return [
        Piece(data=b"<|channel|>", special=True, tokens=0),
        Piece(data=f"commentary to={tool_address(call.tools[0].name, call.tools)} ".encode(), tokens=0),
        Piece(data=b"<|constrain|>", special=True, tokens=0),
        Piece(data=b"json", tokens=0),
        Piece(data=b"<|message|>", special=True, tokens=0),
    ]


def _opened_call(req: GenerationRequest, provider: Provider) -> OpenedCall | None:
    forced = req.forced_tool
    if forced is None and req.tool_choice == "required":
        if len(req.tools) > 1:
            constrains = provider.capabilities.get("constrained_decoding")
            return OpenedCall(tools=req.tools, named=False) if constrains else None
        forced = req.tools[0].name
    if forced is None:
        return None
    tool = next(t for t in req.tools if t.name == forced)  # compat checked it is there
    return OpenedCall(tools=(tool,), named=True)


class HarmonyPipeline(GenerationPipeline):
    # The public name (events, metrics, model cards) predates the class's: it stays.
    name = "primary"

    def build_prompt(self, req: GenerationRequest, sampling: SamplingSnapshot, provider: Provider) -> Prompt:
        tools = req.tools if req.tool_choice != "none" else ()
        date = self.config.current_date or datetime.date.today().isoformat()
        rendered = render_prompt(
            req.messages,
            tools=tools,
            reasoning_effort=sampling.reasoning_effort,
            current_date=date,
            response_format=req.response_format,
        )
        call = _opened_call(req, provider)
        text = str(rendered) + "".join(p.data.decode() for p in _call_header(call))
        return Prompt(text=text, plain=rendered.plain, request=req, call=call)

    def new_decoder(self, req: GenerationRequest, provider: Provider) -> TokenDecoder:
        return HarmonyDecoder()

    def opening(self, prompt: Prompt) -> list[Piece]:
        return _call_header(prompt.call)
