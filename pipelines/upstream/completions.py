"""The legacy completions wire as an upstream client speaks it (`POST /completions`): the
body for a raw prompt, and its event stream (`text` and the legacy logprobs per choice)
turned into messages. The rest of the stream (usage, in-band errors, `[DONE]`) reads as
the chat stream's (`wire.py`)."""

from __future__ import annotations

from typing import Any

import msgspec

from pipelines.providers.base import DecodeParams, Prompt
from pipelines.types import LogprobEntry, MessageEvent, Open, Text
from pipelines.upstream.wire import ChunkReader, StreamUsage, logprob_entry, sampling_body

__all__ = ["CompletionChunkReader", "completion_body"]


def completion_body(model: str, prompt: Prompt, params: DecodeParams) -> dict[str, Any]:
    """The upstream request for one completion. `echo` is not asked for: the gateway echoes
    a text prompt itself (an upstream that cannot say which of its tokens were the prompt's
    is not asked for prompt logprobs; the completion pipeline refuses those)."""
    body = sampling_body(model, params, prompt.request.stop if prompt.request is not None else ())
    body["prompt"] = list(prompt.tokens) if prompt.tokens is not None else prompt.text or ""
    if params.logprobs:
        body["logprobs"] = params.top_logprobs
    return body


class _Logprobs(msgspec.Struct):
    tokens: list[str] = []
    token_logprobs: list[float | None] = []
    top_logprobs: list[dict[str, float] | None] | None = None


class _Choice(msgspec.Struct):
    index: int = 0
    text: str | None = None
    finish_reason: str | None = None
    logprobs: _Logprobs | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] | None = None
    usage: StreamUsage | None = None
    error: Any = None


class CompletionChunkReader(ChunkReader):
    """A completion stream: each choice's `text` is the answer (`final`); a text counts as
    one token per logprob entry (one at least) until the upstream's usage says otherwise."""

    decoder = msgspec.json.Decoder(_Chunk)

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self._opened = False

    def choice(self, choice: Any, out: list[MessageEvent]) -> None:
        lp: _Logprobs | None = choice.logprobs
        entries: tuple[LogprobEntry, ...] = ()
        if lp is not None:
            tops = lp.top_logprobs or [None] * len(lp.tokens)
            entries = tuple(
                logprob_entry(token, value, None, [(t, v, None) for t, v in (top or {}).items()])
                for token, value, top in zip(lp.tokens, lp.token_logprobs, tops, strict=False)
                if value is not None
            )
        if not choice.text and not entries:
            return
        if not self._opened:
            self._opened = True
            out.append(Open(channel="final"))
        out.append(Text(choice.text or "", tokens=max(1, len(entries)), logprobs=entries))
