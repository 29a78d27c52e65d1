"""The chat-completion request as OpenAI documents it, in its order, plus our fenced
extensions. Known fields are validated strictly by their types; unknown top-level
fields are accepted and ignored (SDKs send fields we do not model)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

__all__ = [
    "HUGE_TOKEN_LIMIT",
    "AssistantMessage",
    "ChatCompletionRequest",
    "ContentPart",
    "DeveloperMessage",
    "FunctionDefinition",
    "ImageUrlPart",
    "JsonObjectFormat",
    "JsonSchemaFormat",
    "JsonSchemaSpec",
    "NamedToolChoice",
    "StreamOptions",
    "SystemMessage",
    "TextFormat",
    "TextPart",
    "ToolDefinition",
    "ToolMessage",
    "UserMessage",
    "WireMessage",
    "WireToolCall",
    "decode_chat_request",
]


class _Wire(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Request-side wire objects: unknown keys are ignored, absent keys stay None."""


class TextPart(_Wire, tag="text", tag_field="type"):
    text: str


class ImageUrlPart(_Wire, tag="image_url", tag_field="type"):
    image_url: dict[str, Any]


class InputAudioPart(_Wire, tag="input_audio", tag_field="type"):
    input_audio: dict[str, Any]


class FilePart(_Wire, tag="file", tag_field="type"):
    file: dict[str, Any]


class RefusalPart(_Wire, tag="refusal", tag_field="type"):
    refusal: str


ContentPart = TextPart | ImageUrlPart | InputAudioPart | FilePart | RefusalPart
Content = str | list[ContentPart]


class FunctionCall(_Wire):
    name: str
    arguments: str


class WireToolCall(_Wire):
    id: str
    function: FunctionCall
    type: Literal["function"] = "function"


class SystemMessage(_Wire, tag="system", tag_field="role"):
    content: Content
    name: str | None = None


class DeveloperMessage(_Wire, tag="developer", tag_field="role"):
    content: Content
    name: str | None = None


class UserMessage(_Wire, tag="user", tag_field="role"):
    content: Content
    name: str | None = None


class AssistantMessage(_Wire, tag="assistant", tag_field="role"):
    content: Content | None = None
    name: str | None = None
    refusal: str | None = None
    tool_calls: list[WireToolCall] | None = None
    reasoning_content: str | None = None
    """Extension (DeepSeek / vLLM): earlier reasoning sent back."""
    reasoning: str | None = None
    """Extension (OpenRouter / newer vLLM): the same, under the newer name."""


class ToolMessage(_Wire, tag="tool", tag_field="role"):
    content: Content
    tool_call_id: str


WireMessage = SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage

FunctionName = Annotated[str, Meta(pattern=r"^[a-zA-Z0-9_.-]{1,64}$")]


class FunctionDefinition(_Wire):
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDefinition(_Wire):
    function: FunctionDefinition
    type: Literal["function"] = "function"


class NamedFunction(_Wire):
    name: FunctionName


class NamedToolChoice(_Wire):
    function: NamedFunction
    type: Literal["function"] = "function"


class TextFormat(_Wire, tag="text", tag_field="type"):
    pass


class JsonObjectFormat(_Wire, tag="json_object", tag_field="type"):
    pass


class JsonSchemaSpec(_Wire):
    name: Annotated[str, Meta(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None


class JsonSchemaFormat(_Wire, tag="json_schema", tag_field="type"):
    json_schema: JsonSchemaSpec


ResponseFormatWire = TextFormat | JsonObjectFormat | JsonSchemaFormat


class StreamOptions(_Wire):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


Penalty = Annotated[float, Meta(ge=-2.0, le=2.0)]


class ChatCompletionRequest(_Wire):
    """POST /v1/chat/completions."""

    messages: Annotated[list[WireMessage], Meta(min_length=1)]
    model: str
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    max_completion_tokens: Annotated[int, Meta(ge=1)] | None = None
    max_tokens: Annotated[int, Meta(ge=1)] | None = None
    metadata: dict[str, str] | None = None
    n: Annotated[int, Meta(ge=1, le=128)] | None = None
    parallel_tool_calls: bool | None = None
    presence_penalty: Penalty | None = None
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    response_format: ResponseFormatWire | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    store: bool | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, Meta(ge=0.0, le=2.0)] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    tools: list[ToolDefinition] | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    top_p: Annotated[float, Meta(ge=0.0, le=1.0)] | None = None
    user: str | None = None
    # -- extensions (not OpenAI's; accepted by vLLM / llama.cpp servers too) --
    preset: str | None = None
    """Extension: a named sampling preset from the gateway's settings."""
    top_k: Annotated[int, Meta(ge=0)] | None = None
    """Extension: top-k sampling (0 disables)."""
    min_p: Annotated[float, Meta(ge=0.0, le=1.0)] | None = None
    """Extension: min-p sampling."""
    repeat_penalty: Annotated[float, Meta(gt=0.0)] | None = None
    """Extension: llama.cpp's repetition penalty."""


HUGE_TOKEN_LIMIT = 2**63 - 1
"""What an output limit too long for an int (over 4,300 digits, Python's bound on reading
one) stands for: as large as any, so capped like any (`min(requested, passport cap, gateway cap)`)."""

_OUT_OF_RANGE = re.compile(r"^Integer value out of range - at `\$\.(max_tokens|max_completion_tokens)`$")
_POSITIVE_INTEGER = re.compile(rb"[1-9][0-9]*")
_ABSENT = msgspec.Raw(b"null")


class _RawTokenLimits(ChatCompletionRequest):
    """The request with both output limits kept as their JSON literals (decoding only)."""

    max_completion_tokens: msgspec.Raw = _ABSENT  # type: ignore[assignment]
    max_tokens: msgspec.Raw = _ABSENT  # type: ignore[assignment]


_DECODER = msgspec.json.Decoder(ChatCompletionRequest)
_RAW_LIMITS_DECODER = msgspec.json.Decoder(_RawTokenLimits)
_LIMIT_DECODER = msgspec.json.Decoder(Annotated[int, Meta(ge=1)] | None)


def decode_chat_request(body: bytes) -> ChatCompletionRequest:
    """Decodes and validates a request body; raises `msgspec.DecodeError` (with its
    `- at $.path`) for one that is not a request.

    A `max_tokens` or `max_completion_tokens` too long for an int is still a positive
    integer: it reads as `HUGE_TOKEN_LIMIT`, not as an error. Only such a body is decoded a
    second time, so every other request (and every other error) goes through one decode."""
    try:
        return _DECODER.decode(body)
    except msgspec.ValidationError as exc:
        if not _OUT_OF_RANGE.match(str(exc)):
            raise
    raw = _RAW_LIMITS_DECODER.decode(body)
    limits: dict[str, int | None] = {}
    for name in ("max_completion_tokens", "max_tokens"):
        literal = bytes(getattr(raw, name))
        try:
            limits[name] = _LIMIT_DECODER.decode(literal)
        except msgspec.ValidationError as exc:
            if str(exc) != "Integer value out of range" or not _POSITIVE_INTEGER.fullmatch(literal):
                raise msgspec.ValidationError(f"{exc} - at `$.{name}`") from None  # negative or zero: refused
            limits[name] = HUGE_TOKEN_LIMIT
    return ChatCompletionRequest(**{**msgspec.structs.asdict(raw), **limits})
