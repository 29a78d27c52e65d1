"""The answers of `/v1/completions`: the whole completion, or its stream of chunks, with the
legacy logprobs (`tokens`, `token_logprobs`, `top_logprobs`, `text_offset`) and the echoed
prompt."""

from __future__ import annotations

import codecs
import math
import time
from collections.abc import Iterable, Sequence

import msgspec

from compat.completions_wire.objects import Completion, CompletionChoice, CompletionLogprobs
from compat.errors import WireError
from compat.translate import usage_wire
from pipelines.result import PipelineResult
from pipelines.types import Delta, DeltaKind, LogprobEntry, PromptToken, RawPrompt, Usage

__all__ = ["DONE", "CompletionStreamEncoder", "LegacyLogprobs", "echo_text", "to_completion", "total_usage"]

DONE = b"data: [DONE]\n\n"
"""The stream's last event."""

_FLOOR = -9999.0
"""What a logprob of minus infinity is written as (JSON has no infinity; OpenAI's value)."""


def _logprob(value: float) -> float:
    return value if value > _FLOOR or math.isnan(value) else _FLOOR


def _top(entry: LogprobEntry) -> dict[str, float]:
    """The most likely tokens and the chosen one (OpenAI: up to `logprobs` + 1 entries)."""
    top = {t.token: _logprob(t.logprob) for t in entry.top_logprobs}
    top.setdefault(entry.token, _logprob(entry.logprob))
    return top


def echo_text(prompt: RawPrompt, tokens: Sequence[PromptToken]) -> str:
    """The prompt as the answer repeats it: a text prompt as it was sent; token ids as the
    model's text for them (control tokens such as BOS write none)."""
    if isinstance(prompt, str):
        return prompt
    return b"".join(t.data for t in tokens if not t.special).decode("utf-8", errors="replace")


class LegacyLogprobs:
    """One choice's logprobs in the legacy shape, token by token; a token's `text_offset` is
    where its text starts in the choice's text (control tokens take no room)."""

    def __init__(self) -> None:
        self.value = CompletionLogprobs(tokens=[], token_logprobs=[], top_logprobs=[], text_offset=[])
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._offset = 0

    def _add(self, token: str, data: bytes, entry: LogprobEntry | None, special: bool) -> None:
        v = self.value
        v.tokens.append(token)
        v.token_logprobs.append(_logprob(entry.logprob) if entry is not None else None)
        v.top_logprobs.append(_top(entry) if entry is not None else None)
        v.text_offset.append(self._offset)
        if not special:
            self._offset += len(self._utf8.decode(data))

    def prompt(self, tokens: Sequence[PromptToken]) -> None:
        for t in tokens:
            self._add(t.data.decode("utf-8", errors="replace"), t.data, t.logprob, t.special)

    def generated(self, entries: Sequence[LogprobEntry]) -> None:
        for e in entries:
            self._add(e.token, bytes(e.bytes), e, False)

    def take(self) -> CompletionLogprobs:
        """What was added since the last `take` (a stream chunk's share)."""
        value = self.value
        self.value = CompletionLogprobs(tokens=[], token_logprobs=[], top_logprobs=[], text_offset=[])
        return value


def _prompt_tokens(result: PipelineResult) -> tuple[PromptToken, ...]:
    """The echoed prompt's tokens: every choice shares the one reading of the prompt."""
    for choice in result.all_choices:
        if choice.prompt:
            return choice.prompt
    return ()


def _choice(
    prompt: RawPrompt, result: PipelineResult, c: PipelineResult, base: int, echo: bool, logprobs: bool
) -> CompletionChoice:
    tokens = _prompt_tokens(result)
    text = (echo_text(prompt, tokens) if echo else "") + c.content
    lp = None
    if logprobs:
        legacy = LegacyLogprobs()
        if echo:
            legacy.prompt(tokens)
        legacy.generated(c.logprobs)
        lp = legacy.value
    return CompletionChoice(text=text, index=base + c.index, logprobs=lp, finish_reason=c.finish_reason)


def to_completion(
    answers: Sequence[tuple[RawPrompt, PipelineResult]],
    *,
    completion_id: str,
    model: str,
    created: int,
    echo: bool,
    logprobs: bool,
    n: int,
) -> Completion:
    """The completion of every prompt (choice index: prompt index * n + choice)."""
    choices = [
        _choice(prompt, result, c, i * n, echo, logprobs)
        for i, (prompt, result) in enumerate(answers)
        for c in result.all_choices
    ]
    usage = total_usage(r.usage for _, r in answers)
    return Completion(id=completion_id, created=created, model=model, choices=choices, usage=usage_wire(usage))


def total_usage(usages: Iterable[Usage]) -> Usage:
    """The usage of several prompts' completions together."""
    usages = list(usages)
    return Usage(
        prompt_tokens=sum(u.prompt_tokens for u in usages),
        completion_tokens=sum(u.completion_tokens for u in usages),
        cached_tokens=sum(u.cached_tokens for u in usages),
    )


class CompletionStreamEncoder:
    """One prompt's completion as SSE `data:` lines: the echoed prompt first (once the model
    has read it), then text as it comes, each choice's end, and usage when asked for.

    A request with several prompts streams them one after another, an encoder each: `base`
    numbers its choices after the earlier prompts', and only the `last` one ends the stream
    (`[DONE]`) and tells the usage, `carried` (the earlier prompts') included."""

    def __init__(
        self,
        *,
        completion_id: str,
        model: str,
        prompt: RawPrompt,
        created: int | None = None,
        echo: bool = False,
        logprobs: bool = False,
        choices: int = 1,
        include_usage: bool = False,
        base: int = 0,
        last: bool = True,
        carried: Usage | None = None,
    ) -> None:
        self._id = completion_id
        self._model = model
        self._created = created if created is not None else int(time.time())
        self._prompt = prompt
        self._logprobs = logprobs
        self._include_usage = include_usage
        self._legacy = [LegacyLogprobs() for _ in range(choices)]
        self._echoed = [not echo] * choices
        self._finished: set[int] = set()
        self._base = base
        self._last = last
        self._carried = carried
        self._encoder = msgspec.json.Encoder()

    def _chunk(self, choices: list[CompletionChoice], usage: Usage | None = None) -> bytes:
        for choice in choices:
            choice.index += self._base
        chunk = Completion(
            id=self._id,
            created=self._created,
            model=self._model,
            choices=choices,
            usage=usage_wire(usage) if usage is not None else None,
        )
        return b"data: " + self._encoder.encode(chunk) + b"\n\n"

    def _echo(self, choice: int, tokens: Sequence[PromptToken]) -> bytes:
        """The prompt, before any of the choice's text: as the model read it (its tokens,
        `tokens`), or a text prompt as sent when the provider reports none (an upstream)."""
        if self._echoed[choice]:
            return b""
        self._echoed[choice] = True
        lp = None
        if self._logprobs:
            legacy = self._legacy[choice]
            legacy.prompt(tokens)
            lp = legacy.take()
        return self._chunk([CompletionChoice(text=echo_text(self._prompt, tokens), index=choice, logprobs=lp)])

    def first(self) -> bytes:
        return b""

    def delta(self, d: Delta) -> bytes:
        if d.kind is DeltaKind.PROMPT:
            return self._echo(d.choice, d.prompt)
        if d.kind is DeltaKind.FINISH:
            self._finished.add(d.choice)
            return self._echo(d.choice, ()) + self._chunk(
                [CompletionChoice(text="", index=d.choice, finish_reason=d.finish)]
            )
        if d.kind is not DeltaKind.CONTENT:
            return b""  # a completion is text only
        lp = None
        if self._logprobs:
            legacy = self._legacy[d.choice]
            legacy.generated(d.logprobs)
            lp = legacy.take()
        return self._echo(d.choice, ()) + self._chunk([CompletionChoice(text=d.text, index=d.choice, logprobs=lp)])

    def final(self, result: PipelineResult) -> bytes:
        tokens = _prompt_tokens(result)
        out = b"".join(self._echo(c.index, tokens) for c in result.all_choices)
        out += b"".join(
            self._chunk([CompletionChoice(text="", index=c.index, finish_reason=c.finish_reason)])
            for c in result.all_choices
            if c.index not in self._finished
        )
        if self._include_usage and self._last:
            usage = total_usage([self._carried, result.usage]) if self._carried is not None else result.usage
            out += self._chunk([], usage=usage)
        return out

    @staticmethod
    def failure(error: WireError) -> bytes:
        """A failure after the 200: told in band, as the envelope OpenAI sends."""
        return b"data: " + error.encode() + b"\n\n"

    def done(self) -> bytes:
        return DONE if self._last else b""
