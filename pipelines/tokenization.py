"""The models' tokenizers, as the tokenizer endpoints (vLLM's `/tokenize`, `/detokenize`,
`/tokenizer_info`) use them: a text read as the model's tokenizer reads it (special-token
text parsed as special tokens, as Hugging Face tokenizers and vLLM do), a chat request
read exactly as a generation would read its prompt, token ids back to text.

A model is loaded for its tokenizer (through the manager, as for a generation); a model
with no tokenizer here (one served by an upstream) is a 400."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from pipelines.errors import Unsupported

if TYPE_CHECKING:
    from pipelines.config import ModelConfig
    from pipelines.pipeline import GenerationPipeline
    from pipelines.providers.base import Prompt, Provider
    from pipelines.router import ModelRouter
    from pipelines.types import GenerationRequest

__all__ = ["ModelTokenizer", "Tokenization", "Tokenized"]


class ModelTokenizer(Protocol):
    """What a provider's tokenizer offers (`Provider.tokenizer`)."""

    def encode(self, text: str, *, add_special: bool) -> list[int]:
        """`text`'s tokens, special-token text read as special tokens; `add_special`: the
        model's own BOS (and EOS) around them, as it adds them to a prompt."""

    def prompt_tokens(self, prompt: Prompt) -> list[int]:
        """The tokens a generation reads for `prompt` (a 400 for ids not in the vocabulary)."""

    def decode(self, tokens: Sequence[int]) -> str:
        """The text of `tokens`, special tokens written out."""

    def token_strs(self, tokens: Sequence[int]) -> list[str]:
        """Each token as the vocabulary writes it."""

    def info(self) -> dict[str, Any]:
        """The tokenizer's configuration (what a `tokenizer_config.json` says): its class,
        special tokens, chat template, maximum length."""


class Tokenized(msgspec.Struct, frozen=True):
    tokens: list[int]
    token_strs: list[str] | None
    max_model_len: int


class Tokenization:
    """Tokenizes with the model a request names (or `default_model`)."""

    def __init__(self, router: ModelRouter, pipelines: Mapping[str, GenerationPipeline], default_model: str) -> None:
        self._router = router
        self._pipelines = pipelines
        self.default_model = default_model

    @asynccontextmanager
    async def _using(self, model_id: str | None) -> AsyncIterator[tuple[ModelTokenizer, Provider, ModelConfig]]:
        entry = self._router.entry(model_id or self.default_model)
        async with self._router.manager.using(entry) as provider:
            tokenizer = provider.tokenizer()
            if tokenizer is None:
                raise Unsupported(
                    f"Model '{entry.config.id}' has no tokenizer here (it is served by an upstream).", param="model"
                )
            yield tokenizer, provider, entry.config

    async def tokenize(self, model_id: str | None, text: str, *, add_special: bool, strs: bool) -> Tokenized:
        async with self._using(model_id) as (tok, provider, _):
            return _tokenized(tok, tok.encode(text, add_special=add_special), provider, strs)

    async def tokenize_request(self, req: GenerationRequest, *, strs: bool) -> Tokenized:
        """The prompt tokens a generation of `req` would read (its template, or Harmony)."""
        async with self._using(req.model) as (tok, provider, config):
            prompt = self._pipelines[config.format].prepare(req, provider, config).prompt
            return _tokenized(tok, tok.prompt_tokens(prompt), provider, strs)

    async def detokenize(self, model_id: str | None, tokens: Sequence[int]) -> str:
        async with self._using(model_id) as (tok, _, _):
            return tok.decode(tokens)

    async def info(self, model_id: str | None) -> dict[str, Any]:
        async with self._using(model_id) as (tok, _, _):
            return tok.info()


def _tokenized(tok: ModelTokenizer, tokens: list[int], provider: Provider, strs: bool) -> Tokenized:
    return Tokenized(
        tokens=tokens, token_strs=tok.token_strs(tokens) if strs else None, max_model_len=provider.context_length
    )
