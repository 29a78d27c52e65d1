"""The deterministic stub (ADR-0015): what a model id serves when its weights are not
real here. Output is derived from the request alone, so the same request gives the
same bytes; it is never empty; a Harmony model's stub speaks Harmony (analysis, then
final) so the whole channel path runs, and answers a tool call its prompt opened (a forced
`tool_choice`) with a call."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncGenerator, Iterator
from typing import TYPE_CHECKING

from pipelines.providers.base import CancelToken, DecodeParams, Prompt, Provider
from pipelines.providers.stub_tokens import StubTokenizer, raw_prompt_bytes, stub_logprob, stub_prompt_tokens
from pipelines.types import Output, Piece, Report

if TYPE_CHECKING:
    from pipelines.config import ModelConfig

__all__ = ["StubProvider"]

_STUB_SLOTS = 512

_WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
    "amber",
    "basil",
    "cedar",
    "dune",
    "ember",
    "fern",
    "grove",
    "harbor",
    "island",
    "jade",
    "kelp",
    "lagoon",
    "meadow",
    "nectar",
    "orchid",
    "pebble",
    "quartz",
    "river",
    "summit",
    "thistle",
    "umber",
    "valley",
    "willow",
    "yarrow",
    "zephyr",
]

_SPECIAL = frozenset({b"<|channel|>", b"<|message|>", b"<|end|>", b"<|start|>", b"<|return|>", b"<|call|>"})
_CALL_OPENED = "<|constrain|>json<|message|>"
"""How a Harmony prompt ends when it has opened a tool call for the model (a forced
`tool_choice`): a model then writes the call's JSON arguments and `<|call|>`."""
_YIELD_EVERY = 8
_FRAMING = _SPECIAL | {b"analysis", b"assistant", b"final"}


def _prompt_digest(prompt: Prompt, params: DecodeParams) -> bytes:
    h = hashlib.sha256()
    if prompt.text is not None:
        h.update(prompt.text.encode())
    if prompt.tokens is not None:
        h.update(f"\x00tokens={list(prompt.tokens)}".encode())
    for m in prompt.messages:
        h.update(f"\x00{m.role}\x00{m.content}".encode())
    h.update(f"\x00seed={params.seed}".encode())
    return h.digest()


def _words(seed: bytes, n: int) -> Iterator[str]:
    block = seed
    produced = 0
    while produced < n:
        block = hashlib.sha256(block).digest()
        for byte in block:
            if produced == n:
                return
            yield _WORDS[byte % len(_WORDS)]
            produced += 1


class StubProvider(Provider):
    """Serves a model id deterministically; `stub_reason` says why it is not real."""

    kind = "stub"
    stub = True
    instant = True

    def __init__(self, config: ModelConfig, *, reason: str = "configured") -> None:
        super().__init__(config)
        self.stub_reason = reason

    def admission_slots(self) -> int:
        # A stub costs next to nothing per generation: it is not the scarce resource
        # admission control protects, so it gets many slots.
        return max(self.config.slots, _STUB_SLOTS)

    @property
    def capabilities(self) -> dict[str, bool]:
        # deterministic stand-ins (stub_tokens.py), so that clients can exercise the path
        return {**super().capabilities, "logprobs": True}

    def tokenizer(self) -> StubTokenizer:
        return StubTokenizer(self.context_length)

    def count_tokens(self, prompt: Prompt) -> int:
        raw = raw_prompt_bytes(prompt)
        if raw is not None:
            return len(raw)  # a completion's prompt: bytes, as the stub's tokenizer reads it
        # The stub has no chat tokenizer: whitespace-separated words stand in for tokens.
        if prompt.text is not None:
            return len(prompt.text.split())
        return sum(len(m.content.split()) + 1 for m in prompt.messages)

    def _pieces(self, prompt: Prompt, params: DecodeParams) -> list[bytes]:
        seed = _prompt_digest(prompt, params)
        n = self.config.stub_words
        answer = [f"{w} " for w in _words(seed, n)]
        answer[-1] = answer[-1].rstrip()
        if self.config.format != "harmony" or prompt.raw:
            return [w.encode() for w in answer]  # a raw completion is text whatever the format
        if prompt.text is not None and prompt.text.endswith(_CALL_OPENED):
            # Answer the call the prompt opened as a model would: arguments, then the call's
            # end. `{}` is the one JSON object the stub can write without the schema.
            return [b"{}", b"<|call|>"]
        reasoning = [f"{w} " for w in _words(seed[::-1], max(1, n // 2))]
        reasoning[-1] = reasoning[-1].rstrip()
        return [
            b"<|channel|>",
            b"analysis",
            b"<|message|>",
            *(w.encode() for w in reasoning),
            b"<|end|>",
            b"<|start|>",
            b"assistant",
            b"<|channel|>",
            b"final",
            b"<|message|>",
            *(w.encode() for w in answer),
            b"<|return|>",
        ]

    async def generate(self, prompt: Prompt, params: DecodeParams, cancel: CancelToken) -> AsyncGenerator[Output, None]:
        context = raw_prompt_bytes(prompt) or _prompt_digest(prompt, params)
        if params.echo:
            yield Report(prompt=stub_prompt_tokens(context, logprobs=params.logprobs, top=params.top_logprobs))
        # Harmony framing does not spend the output cap: a tiny cap still yields words.
        budget = params.max_tokens
        for n, data in enumerate(self._pieces(prompt, params), 1):
            if cancel.cancelled:
                return
            framing = data in _FRAMING
            if not framing:
                if budget <= 0:
                    return
                budget -= 1
            logprob = stub_logprob(context, data, params.top_logprobs) if params.logprobs and not framing else None
            yield Piece(data=data, special=data in _SPECIAL, tokens=0 if framing else 1, logprob=logprob)
            context += data
            if n % _YIELD_EVERY == 0:
                # give the loop a turn now and then, so a long stub stream can be cancelled
                await asyncio.sleep(0)
