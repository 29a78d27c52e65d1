"""The deterministic stub (ADR-0015): what a model id serves when its weights are not
real here. Output is derived from the request alone, so the same request gives the
same bytes; it is never empty; a Harmony model's stub speaks Harmony (analysis, then
final) so the whole channel path runs.

Structured requests get structured answers, so that a client can develop against the
stub: a `json_object`/`json_schema` answer is a small instance valid for the schema
(`pipelines/structured/instance.py`); `tool_choice` `required` or a named function is
answered with a call to a declared tool (the named one, else the first) whose arguments
are such an instance of its parameters, whether the prompt already opened the call
(Harmony's forced header) or not; `logprobs` come with deterministic values."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
from collections.abc import AsyncGenerator, Iterator
from typing import TYPE_CHECKING

from pipelines.embedding import EmbeddingInput, EmbeddingRequest, Embeddings, normalized
from pipelines.providers.base import CancelToken, DecodeParams, Prompt, Provider
from pipelines.providers.stub_tokens import StubTokenizer, raw_prompt_bytes, stub_logprob, stub_prompt_tokens
from pipelines.structured import minimal_instance
from pipelines.structured.primitives import json_text
from pipelines.types import Close, Open, Output, Piece, Report, Text, Tool

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

_SPECIAL = frozenset(
    {b"<|channel|>", b"<|message|>", b"<|end|>", b"<|start|>", b"<|return|>", b"<|call|>", b"<|constrain|>"}
)
_OPENED_CALL = re.compile(r"to=functions\.(?P<name>[^\s<]+) ?<\|constrain\|>json<\|message\|>$")
"""How a Harmony prompt ends when it has opened a tool call for the model (a forced
`tool_choice`): a model then writes the call's JSON arguments and `<|call|>`."""
_OPENED_RECIPIENT = "to=functions."
"""How a Harmony prompt ends when it has opened a call but left the function to the model."""
_ASSISTANT = "<|start|>assistant"
_YIELD_EVERY = 8
_FRAMING = _SPECIAL | {b"analysis", b"assistant", b"final", b"json"}
_JSON_PIECE = 12
"""Characters of a JSON answer per piece (so that a stream of it has several chunks)."""


def _prompt_digest(prompt: Prompt, params: DecodeParams) -> bytes:
    h = hashlib.sha256()
    if prompt.text is not None:
        h.update(prompt.text.encode())
    for m in prompt.messages:
        h.update(f"\x00{m.role}\x00{m.content}".encode())
    if prompt.tokens is not None:
        h.update(f"\x00tokens={list(prompt.tokens)}".encode())
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


def _vector(item: EmbeddingInput, n: int) -> list[float]:
    """A unit vector of `n` values in [-1, 1) derived from the input alone."""
    seed = hashlib.sha256(item.encode() if isinstance(item, str) else repr(item).encode()).digest()
    values: list[float] = []
    block = seed
    while len(values) < n:
        block = hashlib.sha256(block).digest()
        values.extend(int.from_bytes(block[i : i + 2], "little") / 32768.0 - 1.0 for i in range(0, len(block), 2))
    return normalized(values[:n])


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

    @functools.cached_property
    def capabilities(self) -> dict[str, bool]:
        return {**super().capabilities, "json_schema": True, "logprobs": True}

    @property
    def embedding_length(self) -> int:
        return self.config.stub_dimensions

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        if not self.config.embedding:
            return await super().embed(request)
        return Embeddings(
            vectors=[_vector(item, self.config.stub_dimensions) for item in request.inputs],
            # whitespace-separated words stand in for tokens, as in `count_tokens`
            prompt_tokens=sum(len(item.split()) if isinstance(item, str) else len(item) for item in request.inputs),
        )

    def _pieces(self, prompt: Prompt, params: DecodeParams) -> tuple[list[bytes], list[bytes], list[bytes]]:
        """The answer's pieces: what comes before the answer (Harmony framing, reasoning),
        the answer (which alone carries logprobs), what ends it."""
        seed = _prompt_digest(prompt, params)
        n = self.config.stub_words
        words = [f"{w} " for w in _words(seed, n)]
        words[-1] = words[-1].rstrip()
        rf = params.response_format
        answer = [w.encode() for w in words]
        if rf.type != "text":
            answer = _json_pieces(
                minimal_instance(rf.schema or {}, _fill(seed)) if rf.schema else {"answer": _fill(seed)}
            )
        if self.config.format != "harmony" or prompt.raw:
            return [], answer, []  # a raw completion is text whatever the format
        opened = _opened(prompt.text or "")
        call = _call(prompt, opened)
        if call is not None:
            tool, head = call
            return head, _json_pieces(minimal_instance(tool.parameters or {}, _fill(seed))), [b"<|call|>"]
        reasoning = [f"{w} " for w in _words(seed[::-1], max(1, n // 2))]
        reasoning[-1] = reasoning[-1].rstrip()
        head = [b"<|channel|>", b"analysis", b"<|message|>", *(w.encode() for w in reasoning), b"<|end|>"]
        head += [b"<|start|>", b"assistant", b"<|channel|>", b"final", b"<|message|>"]
        return head, answer, [b"<|return|>"]

    async def generate(self, prompt: Prompt, params: DecodeParams, cancel: CancelToken) -> AsyncGenerator[Output, None]:
        call = _chat_call(prompt) if self.config.format != "harmony" and not prompt.raw else None
        if call is not None:
            # a chat-template stub's forced call: a message addressed to the function
            seed = _prompt_digest(prompt, params)
            yield Open(recipient=f"functions.{call.name}")
            yield Text(json_text(minimal_instance(call.parameters or {}, _fill(seed))), tokens=1)
            yield Close()
            return
        head, answer, tail = self._pieces(prompt, params)
        # what a piece's logprob is derived from: the prompt, then the pieces before it
        context = raw_prompt_bytes(prompt) or _prompt_digest(prompt, params)
        if params.echo:
            yield Report(prompt=stub_prompt_tokens(context, logprobs=params.logprobs, top=params.top_logprobs))
        # Harmony framing does not spend the output cap: a tiny cap still yields words.
        budget = params.max_tokens
        for n, data in enumerate([*head, *answer, *tail], 1):
            if cancel.cancelled:
                return
            framing = data in _FRAMING
            if not framing:
                if budget <= 0:
                    return
                budget -= 1
            logprob = None
            if params.logprobs and len(head) < n <= len(head) + len(answer):
                logprob = stub_logprob(context, data, params.top_logprobs)
            yield Piece(data=data, special=data in _SPECIAL, tokens=0 if framing else 1, logprob=logprob)
            context += data
            if n % _YIELD_EVERY == 0:
                # give the loop a turn now and then, so a long stub stream can be cancelled
                await asyncio.sleep(0)


def _fill(seed: bytes) -> str:
    """The text a structured answer's strings are made of (two of the request's words)."""
    return " ".join(_words(seed[1:], 2))


def _json_pieces(value: object) -> list[bytes]:
    text = json_text(value)
    return [text[i : i + _JSON_PIECE].encode() for i in range(0, len(text), _JSON_PIECE)]


def _opened(text: str) -> str:
    """What of the assistant's answer a Harmony prompt already holds (after its last header)."""
    at = text.rfind(_ASSISTANT)
    return text[at + len(_ASSISTANT) :] if at >= 0 else ""


def _forced_tool(prompt: Prompt, name: str | None = None) -> Tool | None:
    """The tool a request forces a call to: `name`, the named one, or with `required` the first."""
    req = prompt.request
    if req is None or not req.tools:
        return None
    wanted = name or req.forced_tool
    if wanted is None and req.tool_choice != "required":
        return None
    return next((t for t in req.tools if wanted is None or t.name == wanted), None)


def _call(prompt: Prompt, opened: str) -> tuple[Tool, list[bytes]] | None:
    """The tool a Harmony answer calls, and the header pieces still to write before its
    arguments (none when the prompt opened the call itself)."""
    tool: Tool | None
    match = _OPENED_CALL.search(opened)
    if match is not None:
        tool = _forced_tool(prompt, match.group("name")) or Tool(name=match.group("name"))
        return tool, []
    if opened.endswith(_OPENED_RECIPIENT):
        tool = _forced_tool(prompt)
        if tool is None and prompt.request is not None and prompt.request.tools:
            tool = prompt.request.tools[0]
        if tool is None:
            return None
        return tool, [f"{tool.name} ".encode(), b"<|constrain|>", b"json", b"<|message|>"]
    tool = _forced_tool(prompt)
    if tool is None or opened.strip():
        return None
    return tool, [
        b"<|channel|>",
        f"commentary to=functions.{tool.name} ".encode(),
        b"<|constrain|>",
        b"json",
        b"<|message|>",
    ]


def _chat_call(prompt: Prompt) -> Tool | None:
    return _forced_tool(prompt) if prompt.text is None else None
