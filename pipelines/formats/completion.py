"""Legacy completions (`/v1/completions`), for a model of any format: the client's prompt
goes to the model as it is (no chat template, no Harmony rendering), its special-token text
read as text, and everything the model says is the completion."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipelines.errors import Unsupported
from pipelines.formats.chat import TextDecoder
from pipelines.pipeline import GenerationPipeline, TokenDecoder
from pipelines.providers.base import Prompt, Provider
from pipelines.types import GenerationRequest

if TYPE_CHECKING:
    from pipelines.sampling import SamplingSnapshot

__all__ = ["CompletionPipeline"]


class CompletionPipeline(GenerationPipeline):
    """Chosen by the request (one with a raw `prompt`), not by the model's format."""

    name = "completion"

    def check_supported(self, req: GenerationRequest, provider: Provider) -> None:
        super().check_supported(req, provider)
        # A provider that cannot report the prompt's tokens (an upstream) echoes a text
        # prompt as it was sent, but has neither prompt logprobs nor the text of token ids.
        blind = req.echo and not provider.capabilities.get("prompt_tokens", True)
        if blind and (req.logprobs or not isinstance(req.prompt, str)):
            raise Unsupported(
                f"Model '{req.model}' is served by an upstream whose stream does not tell the prompt's "
                "tokens apart: echo works with a text prompt and without logprobs.",
                param="echo",
            )

    def build_prompt(self, req: GenerationRequest, sampling: SamplingSnapshot, provider: Provider) -> Prompt:
        raw = req.prompt
        assert raw is not None, "a completion request carries its prompt"
        if isinstance(raw, str):
            # all of it plain: a `<|im_end|>` typed into the prompt stays text
            return Prompt(text=raw, plain=((0, len(raw)),), raw=True, request=req)
        return Prompt(tokens=raw, raw=True, request=req)

    def new_decoder(self, req: GenerationRequest, provider: Provider) -> TokenDecoder:
        return TextDecoder()
