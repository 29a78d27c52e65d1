"""What a finished generation produced, and how the results of a request's choices combine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from pipelines.sampling import SamplingSnapshot
from pipelines.types import FinishReason, LogprobEntry, PromptToken, StopReason, ToolCall, Usage

__all__ = ["PipelineResult", "combine_results"]


class PipelineResult(msgspec.Struct, frozen=True, kw_only=True):
    """One choice's answer (or, with `choices`, a whole request's) and how it was made."""

    content: str
    reasoning: str
    tool_calls: tuple[ToolCall, ...]
    finish_reason: FinishReason
    stop_reason: StopReason
    usage: Usage
    sampling: SamplingSnapshot
    logprobs: tuple[LogprobEntry, ...] = ()
    prompt: tuple[PromptToken, ...] = ()
    """The prompt's tokens as the model read them (`echo`); with `n` > 1 the choice that
    read the prompt has them (the others took its cells)."""
    first_token_seconds: float | None = None
    decode_seconds: float = 0.0
    token_gaps: tuple[float, ...] = ()
    notes: dict[str, Any] = {}
    index: int = 0
    choices: tuple[PipelineResult, ...] = ()
    """With `n` > 1: every choice's own result (the top level is choice 0's output with the
    request's totals: usage summed, decode time from the first token to the last of any)."""

    @property
    def all_choices(self) -> tuple[PipelineResult, ...]:
        return self.choices or (self,)

    @property
    def decode_tokens_per_second(self) -> float | None:
        """Tokens after each choice's first over the time they took; None with fewer than two."""
        n = self.usage.completion_tokens - len(self.all_choices)
        if n < 1 or self.decode_seconds <= 0:
            return None
        return n / self.decode_seconds

    def summary(self) -> dict[str, Any]:
        return {
            "sampling": self.sampling.as_dict(),
            "usage": {
                "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens,
                "reasoning_tokens": self.usage.reasoning_tokens,
                "cached_tokens": self.usage.cached_tokens,
            },
            "finish_reason": self.finish_reason,
            "tool_calls": len(self.tool_calls),
            "first_token_seconds": self.first_token_seconds,
            "decode_seconds": self.decode_seconds,
            "decode_tokens_per_second": self.decode_tokens_per_second,
            **({"choices": len(self.choices)} if self.choices else {}),
            **self.notes,
        }


def combine_results(results: Sequence[PipelineResult]) -> PipelineResult:
    """One result for a request's `n` choices (see `PipelineResult.choices`)."""
    if len(results) == 1:
        return results[0]
    first = results[0]
    usage = Usage(
        prompt_tokens=first.usage.prompt_tokens,  # one prompt, read once
        cached_tokens=first.usage.cached_tokens,
        completion_tokens=sum(r.usage.completion_tokens for r in results),
        reasoning_tokens=sum(r.usage.reasoning_tokens for r in results),
    )
    starts = [r.first_token_seconds for r in results if r.first_token_seconds is not None]
    ends = [r.first_token_seconds + r.decode_seconds for r in results if r.first_token_seconds is not None]
    notes: dict[str, Any] = {}
    for r in results:
        for key, value in r.notes.items():
            notes.setdefault(key, value if not isinstance(value, list) else [])
            if isinstance(value, list):
                notes[key].extend(value)
    return msgspec.structs.replace(
        first,
        usage=usage,
        first_token_seconds=min(starts) if starts else None,
        decode_seconds=(max(ends) - min(starts)) if starts else 0.0,
        token_gaps=tuple(gap for r in results for gap in r.token_gaps),
        notes=notes,
        choices=tuple(results),
    )
