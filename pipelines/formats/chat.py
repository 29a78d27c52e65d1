"""Chat-template models (any GGUF with its own template, any upstream): the messages go to
the provider as they are, and it applies the model's template. Everything the model says
in tokens is the answer (`final`)."""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING

from pipelines.errors import Unsupported
from pipelines.formats.forced_calls import ForcedCallDecoder, call_format, forced_tools, with_tools_note
from pipelines.pipeline import GenerationPipeline, TokenDecoder
from pipelines.providers.base import Prompt, Provider
from pipelines.types import GenerationRequest, MessageEvent, Open, Piece, ResponseFormat, StopReason, Text

if TYPE_CHECKING:
    from pipelines.sampling import SamplingSnapshot

__all__ = ["ChatTemplatePipeline", "TextDecoder"]


class TextDecoder:
    """Token pieces -> one `final` message of whole UTF-8 characters (control tokens are
    never text). A token's logprob rides on the text it completes, or on an empty text
    when it ends inside a character."""

    __slots__ = ("_utf8", "opened", "reasoning_tokens")

    stop: StopReason | None = None
    """The template's end is the provider's end-of-generation: tokens never say it here."""

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.opened = False
        self.reasoning_tokens = 0

    def feed(self, piece: Piece) -> list[MessageEvent]:
        if piece.special:
            return []
        text = self._utf8.decode(piece.data)
        logprobs = (piece.logprob,) if piece.logprob is not None else ()
        if not text and not logprobs:
            return []
        return [*self._open(), Text(text, logprobs=logprobs)]

    def finish(self) -> list[MessageEvent]:
        text = self._utf8.decode(b"", final=True)
        return [*self._open(), Text(text)] if text else []

    def _open(self) -> list[MessageEvent]:
        if self.opened:
            return []
        self.opened = True
        return [Open(channel="final")]


class ChatTemplatePipeline(GenerationPipeline):
    # The public name (events, metrics, model cards) predates the class's: it stays.
    name = "lightweight"

    def check_supported(self, req: GenerationRequest, provider: Provider) -> None:
        super().check_supported(req, provider)
        if not req.tools or req.tool_choice == "none" or provider.capabilities.get("tool_calls"):
            return
        if not provider.capabilities.get("json_schema"):
            raise Unsupported(
                f"Model '{req.model}' does not support tool calling; send the request without `tools` "
                "or with tool_choice 'none'.",
                param="tools",
            )
        if not self._forcing(req, provider):
            raise Unsupported(
                f"Model '{req.model}' has no tool syntax in its chat template: it can be made to call a "
                "function (tool_choice 'required' or a named function), but not to choose between "
                "calling and answering (tool_choice 'auto'). Send tool_choice 'required', a named "
                "function, or 'none'.",
                param="tool_choice",
            )

    @staticmethod
    def _forcing(req: GenerationRequest, provider: Provider) -> bool:
        """The call is forced and held by a grammar here (not by the provider's own tools)."""
        if req.tool_choice == "none":
            return False
        caps = provider.capabilities
        return bool(forced_tools(req)) and not caps.get("tool_calls") and bool(caps.get("json_schema"))

    def response_format(self, req: GenerationRequest, provider: Provider) -> ResponseFormat:
        if self._forcing(req, provider):
            return call_format(forced_tools(req))
        return req.response_format

    def build_prompt(self, req: GenerationRequest, sampling: SamplingSnapshot, provider: Provider) -> Prompt:
        if self._forcing(req, provider):
            return Prompt(messages=with_tools_note(req.messages, forced_tools(req)), request=req)
        return Prompt(messages=req.messages, request=req)

    def new_decoder(self, req: GenerationRequest, provider: Provider) -> TokenDecoder:
        return ForcedCallDecoder() if self._forcing(req, provider) else TextDecoder()
