"""The provider contract: load a model, then turn a prompt into a stream of pieces."""

from __future__ import annotations

import abc
import functools
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import msgspec

from pipelines.embedding import EmbeddingRequest, Embeddings
from pipelines.errors import CancelReason, UnsupportedModel
from pipelines.types import GenerationRequest, Message, Output, ResponseFormat, Tool

if TYPE_CHECKING:
    from pipelines.config import ModelConfig
    from pipelines.tokenization import ModelTokenizer

__all__ = ["CancelToken", "DecodeParams", "LoadFailure", "OpenedCall", "Prompt", "Provider", "Source"]


class OpenedCall(msgspec.Struct, frozen=True):
    """A Harmony prompt that ends inside the tool call the model is to make (tool_choice).

    `named`: the prompt names `tools[0]` and opens its arguments (after `<|message|>`);
    otherwise it ends right after `to=functions.` and the model names one of `tools`.
    A provider that constrains decoding holds the rest of the call to them."""

    tools: tuple[Tool, ...]
    named: bool


class Prompt(msgspec.Struct, frozen=True):
    """What to decode from: rendered text (Harmony, with special tokens written
    literally) or chat messages a provider formats with the model's own template."""

    text: str | None = None
    plain: tuple[tuple[int, int], ...] = ()
    """(start, end) character spans of `text` that hold message text (the client's): a
    tokenizer reads them as plain text, never as special tokens."""
    messages: tuple[Message, ...] = ()
    tokens: tuple[int, ...] | None = None
    """A completion prompt given as token ids: read as they are (no BOS added)."""
    raw: bool = False
    """A legacy completion's prompt (`text`, all of it plain, or `tokens`): an upstream gets
    it on its `/completions`."""
    request: GenerationRequest | None = None
    """The request the prompt was built from, for providers that pass it on whole
    (an upstream needs its tools, tool choice, stop and response format; the stub answers
    a forced tool choice with a call to one of its tools)."""
    call: OpenedCall | None = None
    """Harmony: the call the prompt opened for the model to finish."""


class DecodeParams(msgspec.Struct, frozen=True):
    """Concrete sampling for one generation, after all layers were merged."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0
    seed: int | None = None
    response_format: ResponseFormat = ResponseFormat()
    logprobs: bool = False
    top_logprobs: int = 0
    echo: bool = False
    """Report the prompt's tokens (with their logprobs when `logprobs`): see `Report.prompt`."""


class CancelToken:
    """Set by the pipeline when the consumer goes away; read by decode loops (threads
    included) between tokens."""

    __slots__ = ("cancelled", "reason")

    def __init__(self) -> None:
        # A plain attribute: decode threads only poll it, nobody waits on it, and one
        # attribute store is atomic (a threading.Event cost a lock and a condition per request).
        self.cancelled = False
        self.reason: CancelReason | None = None
        """The first reason given (a later cancel does not change it)."""

    def cancel(self, reason: CancelReason) -> None:
        if self.reason is None:
            self.reason = reason
        self.cancelled = True


class LoadFailure(Exception):
    """A provider could not load its model; `reason` is a short machine value."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


Source: TypeAlias = "Callable[[Prompt, DecodeParams, CancelToken], AsyncGenerator[Output, None]]"
"""One way to run a generation (a provider's `generate`, or one of its upstream servers)."""


class Provider(abc.ABC):
    """One model's source of pieces.

    `load` raises `LoadFailure` when the real model cannot be had; the model manager
    then serves the id from the stub (ADR-0015). `generate` yields pieces as they
    decode and stops early when `cancel` is set.
    """

    kind: str = "abstract"
    stub: bool = False
    holds_weights: bool = False
    """Loaded, it holds a model's weights in this process's memory (heavy models exclude
    each other); stubs and remote upstreams do not."""
    stub_reason: str | None = None
    instant: bool = False
    """Answers in microseconds, so that watching a client for a disconnect costs more
    than the answer (the stub)."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config

    @functools.cached_property
    def capabilities(self) -> dict[str, bool]:
        return {
            "tool_calls": self.config.format == "harmony" or self.config.tools,
            "reasoning": self.config.format == "harmony",
            "json_schema": False,
            "logprobs": False,
            "streaming": True,
            "embeddings": self.config.embedding,
        }

    async def load(self) -> None:  # noqa: B027 (most providers have nothing to load)
        """Makes the model ready to generate (the model manager calls it, and owns the
        model's status)."""

    async def unload(self) -> None:  # noqa: B027
        """Lets go of whatever `load` took."""

    def foreseen_failure(self) -> LoadFailure | None:
        """Why `load` would fail if it ran now, when a cheap check without side effects can
        tell (a missing weights file); None when it may succeed. Lets the model list say
        "stub" for a model that was never loaded, before its first request."""
        return None

    def count_tokens(self, prompt: Prompt) -> int | None:
        """Prompt tokens, when the provider can tell before decoding (None: unknown)."""
        return None

    @property
    def context_length(self) -> int:
        return self.config.context_length

    @property
    def max_choices(self) -> int | None:
        """The most choices (`n`) one request may ask of this provider at once; None when
        the provider sets no bound of its own (the gateway's `max_choices` setting still does)."""
        return None

    def admission_slots(self) -> int:
        """How many generations of this model admission control lets run at once."""
        return self.config.slots

    def attempts(self) -> list[Source]:
        """The ways to run one generation, in the order to try them: a failure before the
        first piece that may be retried moves on to the next (the fallback chain)."""
        return [self.generate]

    def tokenizer(self) -> ModelTokenizer | None:
        """The loaded model's tokenizer (the tokenizer endpoints); None when it has none
        here (a model served by an upstream)."""
        return None

    def placement(self) -> dict[str, Any] | None:
        """Where a local model's weights run once loaded (backend, layers offloaded to a
        GPU), for the model card; None for a model that holds no weights here."""
        return None

    def upstream_states(self) -> list[dict[str, Any]] | None:
        """The state of each upstream server the model is served by (model cards show
        it); None for a model served here."""
        return None

    async def maintain(self) -> None:
        """Background upkeep for as long as the gateway runs (an upstream pool's health
        probes); returns at once when there is none."""
        return

    @property
    def embedding_length(self) -> int | None:
        """The length of the vectors `embed` gives, when the provider makes them itself
        (the service then checks and applies a request's `dimensions`); None when another
        server makes them (`dimensions` is passed on, and that server decides)."""
        return None

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        """One unit-length vector per input of `request`, in order. Only embedding models
        (`embedding` in the passport) are asked; the rest refuse."""
        raise UnsupportedModel(f"The model '{self.config.id}' does not create embeddings.")

    @abc.abstractmethod
    def generate(self, prompt: Prompt, params: DecodeParams, cancel: CancelToken) -> AsyncGenerator[Output, None]:
        """Yield the output of one generation."""

    def generate_choices(
        self, prompt: Prompt, params: Sequence[DecodeParams], cancel: CancelToken
    ) -> Sequence[AsyncGenerator[Output, None]]:
        """One stream of pieces per choice of one request, all from the same prompt (each
        `params` has its own seed). The consumer reads them concurrently and closes each.

        By default every choice is a generation of its own; a provider that can evaluate the
        prompt once and fork its state for every choice overrides this."""
        return [self.generate(prompt, p, cancel) for p in params]
