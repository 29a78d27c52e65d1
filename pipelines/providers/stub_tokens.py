"""The stub's tokenizer and logprobs: deterministic stand-ins, so that a client developing
against a stub model can exercise legacy completions (token-id prompts, `echo`, `logprobs`)
and the tokenizer endpoints. They say nothing about any real model.

Its vocabulary is the 256 byte values: a text's tokens are its UTF-8 bytes, and token ids
above 255 do not exist. A logprob is derived from a hash of the token and what precedes it;
the chosen token is always the most likely one of its `top_logprobs`."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from pipelines.providers.base import Prompt
from pipelines.providers.vocab import check_token_ids
from pipelines.types import LogprobEntry, PromptToken, TopLogprob

__all__ = [
    "STUB_VOCAB",
    "StubTokenizer",
    "raw_prompt_bytes",
    "stub_decode",
    "stub_encode",
    "stub_logprob",
    "stub_prompt_tokens",
]

STUB_VOCAB = 256
"""Token ids the stub knows: one per byte value."""


def stub_encode(text: str) -> list[int]:
    return list(text.encode())


def stub_decode(tokens: Sequence[int], *, param: str = "tokens") -> bytes:
    """The bytes of `tokens`; an id outside the vocabulary is a 400 naming `param`."""
    check_token_ids(tokens, STUB_VOCAB, param=param, vocabulary=f"a stub's: {STUB_VOCAB} ids, one per byte")
    return bytes(tokens)


def raw_prompt_bytes(prompt: Prompt) -> bytes | None:
    """A completion prompt's bytes (its tokens, for the stub); None for a chat prompt."""
    if not prompt.raw:
        return None
    if prompt.tokens is not None:
        return stub_decode(prompt.tokens, param="prompt")
    return (prompt.text or "").encode()


def stub_logprob(context: bytes, data: bytes, top: int) -> LogprobEntry:
    """A deterministic logprob for `data` after `context`, with `top` alternatives below it."""
    h = int.from_bytes(hashlib.sha256(context + b"\x00" + data).digest()[:4], "big")
    chosen = -(h % 1000) / 2000  # in (-0.5, 0]
    token = data.decode("utf-8", errors="replace")
    others = [
        TopLogprob(
            token=f"<{(h + i) % STUB_VOCAB:02x}>",
            logprob=chosen - 1.0 - i,
            bytes=list(f"<{(h + i) % STUB_VOCAB:02x}>".encode()),
        )
        for i in range(1, top)
    ]
    tops = [TopLogprob(token=token, logprob=chosen, bytes=list(data)), *others] if top > 0 else []
    return LogprobEntry(token=token, logprob=chosen, bytes=list(data), top_logprobs=tops)


def stub_prompt_tokens(data: bytes, *, logprobs: bool, top: int) -> tuple[PromptToken, ...]:
    """The prompt's byte tokens as an echo reports them (the first has no logprob)."""
    return tuple(
        PromptToken(
            data=data[i : i + 1], logprob=stub_logprob(data[:i], data[i : i + 1], top) if logprobs and i else None
        )
        for i in range(len(data))
    )


class StubTokenizer:
    """`ModelTokenizer` (pipelines/tokenization.py) for a stub: UTF-8 bytes. A chat prompt
    reads as its text (Harmony's render, or the messages' contents a line each)."""

    def __init__(self, context_length: int) -> None:
        self._context_length = context_length

    def encode(self, text: str, *, add_special: bool) -> list[int]:
        return stub_encode(text)  # no special tokens to add

    def prompt_tokens(self, prompt: Prompt) -> list[int]:
        raw = raw_prompt_bytes(prompt)
        if raw is not None:
            return list(raw)
        if prompt.text is not None:
            return stub_encode(prompt.text)
        return stub_encode("\n".join(m.content for m in prompt.messages))

    def decode(self, tokens: Sequence[int]) -> str:
        return stub_decode(tokens).decode("utf-8", errors="replace")

    def token_strs(self, tokens: Sequence[int]) -> list[str]:
        return [bytes([b]).decode("utf-8", errors="replace") for b in stub_decode(tokens)]

    def info(self) -> dict[str, Any]:
        return {
            "tokenizer_class": "MiaStubBytes",
            "bos_token": None,
            "eos_token": None,
            "pad_token": None,
            "unk_token": None,
            "add_bos_token": False,
            "add_eos_token": False,
            "chat_template": None,
            "model_max_length": self._context_length,
            "vocab_size": STUB_VOCAB,
        }
