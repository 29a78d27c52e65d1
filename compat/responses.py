"""What the gateway answers: completions, stream chunks, model cards, errors."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "Choice",
    "ChoiceLogprobs",
    "ChunkChoice",
    "ChunkDelta",
    "CompletionTokensDetails",
    "ErrorBody",
    "ErrorEnvelope",
    "ModelCard",
    "ModelList",
    "PromptTokensDetails",
    "ResponseMessage",
    "ToolCallDelta",
    "ToolCallFunctionDelta",
    "UsageWire",
]


class _Out(msgspec.Struct, kw_only=True):
    """Response-side objects keep OpenAI's nulls (clients read `finish_reason: null`)."""


class _Sparse(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Deltas omit what they do not carry, as OpenAI's stream does."""


class TopLogprobWire(_Out):
    token: str
    logprob: float
    bytes: list[int] | None


class LogprobWire(_Out):
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprobWire]


class ChoiceLogprobs(_Out):
    content: list[LogprobWire] | None
    refusal: list[LogprobWire] | None = None


class FunctionCallWire(_Out):
    name: str
    arguments: str


class ToolCallWire(_Out):
    id: str
    function: FunctionCallWire
    type: Literal["function"] = "function"


class ResponseMessage(_Out):
    content: str | None
    refusal: str | None = None
    role: Literal["assistant"] = "assistant"
    tool_calls: list[ToolCallWire] | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None


class Choice(_Out):
    index: int
    message: ResponseMessage
    finish_reason: str
    logprobs: ChoiceLogprobs | None = None


class CompletionTokensDetails(_Out):
    reasoning_tokens: int = 0


class PromptTokensDetails(_Out):
    cached_tokens: int = 0
    """Prompt tokens taken from the prefix cache instead of evaluated."""


class UsageWire(_Out):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None


class ChatCompletion(_Out):
    id: str
    created: int
    model: str
    choices: list[Choice]
    usage: UsageWire
    object: Literal["chat.completion"] = "chat.completion"
    system_fingerprint: str | None = None


class ToolCallFunctionDelta(_Sparse):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(_Sparse):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: ToolCallFunctionDelta | None = None


class ChunkDelta(_Sparse):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(_Out):
    index: int
    delta: ChunkDelta
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(_Out):
    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    system_fingerprint: str | None = None
    usage: UsageWire | None = None


class ModelCard(_Out):
    """OpenAI's model object plus the gateway's honesty fields."""

    id: str
    created: int
    owned_by: str
    object: Literal["model"] = "model"
    stub: bool = False
    """True when this id is served by the deterministic stub, not real weights (for a model
    not loaded yet: when its load would fall back to the stub, as far as a check of its
    weights file can tell)."""
    stub_reason: str | None = None
    role: str = "lightweight"
    pipeline: str = "lightweight"
    status: Literal["loaded", "loading", "unloaded"] = "unloaded"
    provider: str = "stub"
    aliases: list[str] = []
    context_length: int = 0
    max_output_tokens: int = 0
    capabilities: dict[str, bool] = {}
    upstreams: list[dict[str, Any]] | None = None
    placement: dict[str, Any] | None = None
    """A local model's: backend (cpu, gpu), its layers, how many of them run on a GPU."""


class ModelList(_Out):
    data: list[ModelCard]
    object: Literal["list"] = "list"


class ErrorBody(_Out):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorEnvelope(_Out):
    error: ErrorBody
