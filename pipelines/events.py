"""The one typed event bus: every metric and log line is derived from these events.

Ordering invariants (DESIGN.md): `ModelLoaded` precedes any generation event of that
model; `ModelRouted` follows `prepare`; a streamed generation emits at least one
`GenerationChunk` between `GenerationStarted` and its end; every `GenerationStarted`
ends in exactly one `GenerationCompleted` or `GenerationCancelled`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec

__all__ = [
    "AdmissionChanged",
    "ConnectionsChanged",
    "EmbeddingsCreated",
    "Event",
    "EventBus",
    "FallbackTriggered",
    "GenerationCancelled",
    "GenerationChunk",
    "GenerationCompleted",
    "GenerationStarted",
    "ModelLoadFailed",
    "ModelLoaded",
    "ModelRouted",
    "ModelUnloaded",
    "PromptProcessed",
    "RequestFinished",
    "StorageOperation",
    "StructuredOutputChecked",
    "ToolsIgnored",
]

_log = logging.getLogger(__name__)


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="event", tag=True):
    """Base of every event; `ts` is wall-clock seconds, set when the event is made."""

    ts: float = msgspec.field(default_factory=time.time)


class ModelLoaded(Event, frozen=True, kw_only=True):
    model_id: str
    provider: str
    role: str
    load_seconds: float = 0.0
    metadata: dict[str, Any] = {}
    """Carries `stub` (bool) and, for a stub, `stub_reason`."""

    @property
    def stub(self) -> bool:
        return bool(self.metadata.get("stub", False))


class ModelLoadFailed(Event, frozen=True, kw_only=True):
    model_id: str
    provider: str
    reason: str
    """A short machine value: `import_error`, `missing_file`, `checksum_mismatch`, `load_error`."""
    detail: str = ""


class ModelUnloaded(Event, frozen=True, kw_only=True):
    model_id: str
    reason: str
    """`switch_heavy`, `switch_heavy_to_lightweight`, `explicit_unload`, `idle`, `shutdown`."""


class ModelRouted(Event, frozen=True, kw_only=True):
    request_id: str
    model_id: str
    pipeline: str
    stub: bool
    capabilities: dict[str, bool] = {}


class GenerationStarted(Event, frozen=True, kw_only=True):
    request_id: str
    model_id: str
    pipeline: str
    stub: bool
    stream: bool
    sampling: dict[str, Any]
    queue_seconds: float = 0.0


class GenerationChunk(Event, frozen=True, kw_only=True):
    request_id: str
    model_id: str
    channel: str
    text: str
    choice: int = 0


class GenerationCompleted(Event, frozen=True, kw_only=True):
    request_id: str
    model_id: str
    pipeline: str
    stub: bool
    stop_reason: str
    result_summary: dict[str, Any]
    """`sampling` (the same snapshot as at start), `usage`, `timing`, `finish_reason`, …"""
    token_gaps: tuple[float, ...] = ()
    """Seconds between consecutive tokens, for latency histograms (not logged)."""


class GenerationCancelled(Event, frozen=True, kw_only=True):
    request_id: str
    model_id: str
    pipeline: str
    stub: bool
    reason: str
    """`client_disconnect`, `timeout`, `shutdown`, `upstream_error`, `error`."""
    completion_tokens: int = 0


class PromptProcessed(Event, frozen=True, kw_only=True):
    """A llama.cpp generation has read its prompt (emitted before its first piece):
    how much of it a slot's cached prefix held and how much was evaluated."""

    request_id: str | None
    """None for prompts built without a request (Harmony text)."""
    model_id: str
    prompt_tokens: int
    cached_tokens: int
    evaluated_tokens: int
    slot: int
    seconds: float
    """From joining the engine to the first token's logits (queueing for a slot included)."""


class FallbackTriggered(Event, frozen=True, kw_only=True):
    request_id: str
    from_model: str
    to_model: str
    reason: str


class AdmissionChanged(Event, frozen=True, kw_only=True):
    """A model's running/waiting counts changed (admission control)."""

    model_id: str
    running: int
    waiting: int


class ConnectionsChanged(Event, frozen=True, kw_only=True):
    """An HTTP connection opened or closed; `open` is how many are open now."""

    open: int


class EmbeddingsCreated(Event, frozen=True, kw_only=True):
    """An embeddings request answered: how many inputs, the tokens read, and how long
    the model took (from admission to the vectors)."""

    request_id: str
    model_id: str
    inputs: int
    prompt_tokens: int
    stub: bool
    seconds: float


class ToolsIgnored(Event, frozen=True, kw_only=True):
    """Hosted tools a request named (`web_search`, `code_interpreter`, ...) that the gateway
    cannot run, left out of its prompt."""

    request_id: str
    tools: list[str]


class StorageOperation(Event, frozen=True, kw_only=True):
    """One operation of the response store (`put`, `get`, `delete`, `input_items`, `evict`)."""

    operation: str
    backend: str
    seconds: float
    ok: bool
    """False: the store was unavailable (the request that needed it got a 503)."""


class StructuredOutputChecked(Event, frozen=True, kw_only=True):
    """A finished structured output checked against its full JSON Schema (after
    `GenerationCompleted`): the answer against `response_format`, or a call's arguments
    against its tool's parameters."""

    request_id: str
    model_id: str
    stub: bool
    target: str
    """`response_format` or `tool_arguments`."""
    outcome: str
    """`valid`, `invalid`, `unparseable`, or `truncated` (unparseable after the output cap)."""
    choice: int = 0
    tool: str | None = None
    errors: list[str] = []
    """Where an invalid output failed (a few of the validator's messages)."""
    unenforced: list[str] = []
    """Schema keywords the grammar did not hold output to (only this check did)."""


class RequestFinished(Event, frozen=True, kw_only=True):
    """One HTTP request answered (any route), for request counters and durations."""

    request_id: str
    endpoint: str
    method: str
    status: int
    duration_seconds: float
    model_id: str | None = None


Listener = Callable[[Event], None]


class EventBus:
    """Synchronous fan-out of events to listeners.

    Listeners run inline and must be cheap; one that raises is logged and skipped so
    that observability can never break a request. `wants_chunks` lets the hot path
    skip building `GenerationChunk` events when nobody listens for them.
    """

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._chunk_listeners: list[Listener] = []

    def subscribe(self, listener: Listener, *, chunks: bool = False) -> None:
        self._listeners.append(listener)
        if chunks:
            self._chunk_listeners.append(listener)

    @property
    def wants_chunks(self) -> bool:
        return bool(self._chunk_listeners)

    def emit(self, event: Event) -> None:
        listeners = self._chunk_listeners if isinstance(event, GenerationChunk) else self._listeners
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                _log.exception("event listener failed on %s", type(event).__name__)
