"""Chat-template models (any GGUF with its own template, any upstream): the messages go to
the provider as they are, and it applies the model's template. Everything the model says
in tokens is the answer (`final`)."""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING

from pipelines.errors import Unsupported
from pipelines.pipeline import GenerationPipeline, TokenDecoder
from pipelines.providers.base import Prompt, Provider
from pipelines.types import GenerationRequest, MessageEvent, Open, Piece, StopReason, Text

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
        if req.tools and req.tool_choice != "none" and not provider.capabilities.get("tool_calls"):
            raise Unsupported(
                f"Model '{req.model}' does not support tool calling; send the request without `tools` "
                "or with tool_choice 'none'.",
                param="tools",
            )

    def build_prompt(self, req: GenerationRequest, sampling: SamplingSnapshot, provider: Provider) -> Prompt:
        return Prompt(messages=req.messages, request=req)

    def new_decoder(self, req: GenerationRequest) -> TokenDecoder:
        return TextDecoder()
