"""What `/v1/completions` answers: a `text_completion` object, whole or as stream chunks."""

from __future__ import annotations

from typing import Literal

import msgspec

from compat.responses import UsageWire

__all__ = ["Completion", "CompletionChoice", "CompletionLogprobs"]


class CompletionLogprobs(msgspec.Struct, kw_only=True):
    """The legacy logprobs shape: one entry per token in each list. `token_logprobs` and
    `top_logprobs` are null for the first token of an echoed prompt (nothing precedes it);
    `text_offset` is where each token's text starts in the choice's `text`."""

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(msgspec.Struct, kw_only=True):
    text: str
    index: int
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None = None


class Completion(msgspec.Struct, kw_only=True):
    """A completion, or (with `stream`) one chunk of it: the same object, OpenAI's way."""

    id: str
    created: int
    model: str
    choices: list[CompletionChoice]
    object: Literal["text_completion"] = "text_completion"
    system_fingerprint: str | None = None
    usage: UsageWire | None = None
