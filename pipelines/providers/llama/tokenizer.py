"""A loaded GGUF's tokenizer for the tokenizer endpoints: llama.cpp's own tokenization
(what generations read), its vocabulary's texts, and the tokenizer metadata of the file."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipelines.providers.base import Prompt
from pipelines.providers.llama.prompt import PromptReader
from pipelines.providers.llama.runtime import runtime, token_bytes, token_text
from pipelines.providers.vocab import check_token_ids

__all__ = ["LlamaTokenizer"]


class LlamaTokenizer:
    """`ModelTokenizer` (pipelines/tokenization.py) over a loaded model's prompt reader."""

    def __init__(self, prompts: PromptReader, metadata: dict[str, str], context_length: int) -> None:
        self._prompts = prompts
        self._metadata = metadata
        self._context_length = context_length
        llama_cpp = runtime()
        self._vocab = llama_cpp.llama_model_get_vocab(prompts.tok.model)
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)

    def encode(self, text: str, *, add_special: bool) -> list[int]:
        return self._prompts.tok.tokenize(text.encode(), add_bos=add_special, special=True)

    def prompt_tokens(self, prompt: Prompt) -> list[int]:
        return list(self._prompts.tokens(prompt))

    def _checked(self, tokens: Sequence[int]) -> None:
        check_token_ids(tokens, self._n_vocab, param="tokens", vocabulary=f"{self._n_vocab} ids")

    def decode(self, tokens: Sequence[int]) -> str:
        self._checked(tokens)
        return b"".join(token_bytes(self._vocab, t) for t in tokens).decode("utf-8", errors="replace")

    def token_strs(self, tokens: Sequence[int]) -> list[str]:
        self._checked(tokens)
        return [token_text(self._prompts.tok.model, t) for t in tokens]

    def info(self) -> dict[str, Any]:
        llama_cpp = runtime()
        model, meta = self._prompts.tok.model, self._metadata

        def special(token: int) -> str | None:
            return token_text(model, token) if token >= 0 else None

        def flag(key: str) -> bool | None:
            value = meta.get(key)
            return None if value is None else value.lower() == "true"

        return {
            "tokenizer_class": f"GGUF:{meta.get('tokenizer.ggml.model', 'unknown')}",
            "bos_token": special(llama_cpp.llama_vocab_bos(self._vocab)),
            "eos_token": special(llama_cpp.llama_vocab_eos(self._vocab)),
            "pad_token": special(llama_cpp.llama_vocab_pad(self._vocab)),
            "unk_token": special(int(meta.get("tokenizer.ggml.unknown_token_id", -1))),
            "add_bos_token": flag("tokenizer.ggml.add_bos_token"),
            "add_eos_token": flag("tokenizer.ggml.add_eos_token"),
            "chat_template": meta.get("tokenizer.chat_template"),
            "model_max_length": self._context_length,
            "vocab_size": self._n_vocab,
        }
