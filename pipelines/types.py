"""Internal request, message and delta types shared by pipelines and providers.

These are what `compat/` translates the OpenAI wire into and out of; nothing here
knows the wire's field names or HTTP.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

import msgspec

__all__ = [
    "Delta",
    "DeltaKind",
    "FinishReason",
    "GenerationRequest",
    "LogprobEntry",
    "Message",
    "Piece",
    "ResponseFormat",
    "SamplingOverrides",
    "StopReason",
    "Tool",
    "ToolCall",
    "TopLogprob",
    "Usage",
]

Role = Literal["system", "developer", "user", "assistant", "tool"]
ReasoningEffort = Literal["low", "medium", "high"]


class ToolCall(msgspec.Struct, frozen=True):
    """A function call made by an assistant turn (arguments as the raw JSON text)."""

    id: str
    name: str
    arguments: str


class Message(msgspec.Struct, frozen=True):
    """One conversation turn, content already flattened to text."""

    role: Role
    content: str = ""
    name: str | None = None
    reasoning: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


class Tool(msgspec.Struct, frozen=True):
    """A function the model may call; `parameters` is its JSON Schema."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ResponseFormat(msgspec.Struct, frozen=True):
    """`text`, `json_object`, or `json_schema` with its schema."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    schema: dict[str, Any] | None = None
    name: str | None = None
    strict: bool = False


class SamplingOverrides(msgspec.Struct, frozen=True, omit_defaults=True):
    """Sampling values a layer sets; `None` means the layer leaves it alone."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repeat_penalty: float | None = None
    seed: int | None = None
    max_tokens: int | None = None
    reasoning_effort: ReasoningEffort | None = None


class GenerationRequest(msgspec.Struct, frozen=True):
    """A chat generation request as the pipelines see it."""

    request_id: str
    model: str
    messages: tuple[Message, ...]
    sampling: SamplingOverrides = SamplingOverrides()
    preset: str | None = None
    stop: tuple[str, ...] = ()
    stream: bool = False
    tools: tuple[Tool, ...] = ()
    tool_choice: str = "auto"
    """`auto`, `none`, `required`, or `function:NAME` for a forced function."""
    parallel_tool_calls: bool = True
    response_format: ResponseFormat = ResponseFormat()
    logprobs: bool = False
    top_logprobs: int = 0
    n: int = 1

    @property
    def forced_tool(self) -> str | None:
        if self.tool_choice.startswith("function:"):
            return self.tool_choice.removeprefix("function:")
        return None


class Piece(msgspec.Struct, frozen=True):
    """What a provider yields: the bytes of one decoded token (or a few).

    `special` marks control tokens (Harmony's `<|channel|>` etc.), which are never
    text. `tokens` is how many model tokens the piece stands for. `channel` is set
    by providers that already know it (an upstream that split reasoning out).

    Providers whose backend already speaks in deltas (an OpenAI-compatible upstream)
    set `delta` instead of `data` (a tool-call delta, typically), and may end with a
    piece carrying `usage` (the backend's own counts) and `stop` (why it stopped).
    """

    data: bytes = b""
    special: bool = False
    tokens: int = 1
    channel: Literal["reasoning", "content"] | None = None
    logprob: LogprobEntry | None = None
    delta: Delta | None = None
    usage: Usage | None = None
    stop: StopReason | None = None


class TopLogprob(msgspec.Struct, frozen=True):
    token: str
    logprob: float
    bytes: list[int]


class LogprobEntry(msgspec.Struct, frozen=True):
    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[TopLogprob] = []


class DeltaKind(enum.Enum):
    CONTENT = "content"
    REASONING = "reasoning"
    TOOL_CALL = "tool_call"
    FINISH = "finish"
    """One choice of several has ended (`finish` says why); the others go on."""


class Delta(msgspec.Struct, frozen=True):
    """One piece of output for the client, already in OpenAI's terms.

    For tool calls the first delta of a call carries `tool_id` and `tool_name`;
    later ones carry only argument text, all with the same `tool_index`.
    """

    kind: DeltaKind
    text: str = ""
    tool_index: int = 0
    tool_id: str | None = None
    tool_name: str | None = None
    logprobs: tuple[LogprobEntry, ...] = ()
    choice: int = 0
    """Which of the request's choices (`n`) this delta belongs to."""
    finish: FinishReason | None = None


class StopReason(enum.Enum):
    """Why a generation ended, as events and metrics record it."""

    EOS = "eos"
    LENGTH = "length"
    STOP = "stop"
    TOOL_CALL = "tool_call"
    STUB = "stub"
    ERROR = "error"


FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


class Usage(msgspec.Struct, frozen=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens
