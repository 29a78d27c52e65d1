"""Internal request, message and delta types shared by pipelines and providers.

These are what `compat/` translates the OpenAI wire into and out of; nothing here
knows the wire's field names or HTTP.
"""

from __future__ import annotations

import enum
from typing import Any, Literal, TypeAlias

import msgspec

__all__ = [
    "Close",
    "Delta",
    "DeltaKind",
    "FinishReason",
    "GenerationRequest",
    "LogprobEntry",
    "Message",
    "MessageEvent",
    "Open",
    "Output",
    "Piece",
    "PromptToken",
    "RawPrompt",
    "Report",
    "ResponseFormat",
    "SamplingOverrides",
    "StopReason",
    "Text",
    "Tool",
    "ToolCall",
    "ToolNamespace",
    "TopLogprob",
    "Usage",
]

Role = Literal["system", "developer", "user", "assistant", "tool"]
RawPrompt: TypeAlias = "str | tuple[int, ...]"
"""A legacy completion's prompt: text read as it is (no template), or token ids."""
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


class ToolNamespace(msgspec.Struct, frozen=True):
    """A named group of functions (a Responses `namespace` tool, Codex's `multi_agent_v1`)."""

    name: str
    description: str = ""


class Tool(msgspec.Struct, frozen=True):
    """A function the model may call; `parameters` is its JSON Schema.

    A function of a `namespace` has the name `NAMESPACE.NAME`: chat templates and upstreams
    are offered it under that flat name, and its calls come back with it. Harmony renders
    the namespace natively (`namespace NAMESPACE { ... }`, calls `to=NAMESPACE.NAME`)."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    namespace: ToolNamespace | None = None


class ResponseFormat(msgspec.Struct, frozen=True):
    """`text`, `json_object`, or `json_schema` with its schema."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    schema: dict[str, Any] | None = None
    name: str | None = None
    strict: bool = False
    description: str | None = None


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
    prompt: RawPrompt | None = None
    """A legacy completion (`/v1/completions`): the raw prompt the model continues, with no
    template and no messages; its special-token text stays text."""
    echo: bool = False
    """The prompt is part of the answer (a completion's `echo`): the provider reports the
    prompt's tokens (`Report.prompt`), with their logprobs when `logprobs` is set."""
    messages_param: str = "messages"
    """The request field the messages came from, for errors about them (`input` on the
    Responses wire)."""

    @property
    def prompt_param(self) -> str:
        """The request field an error about the whole prompt names."""
        return "prompt" if self.prompt is not None else self.messages_param

    @property
    def forced_tool(self) -> str | None:
        if self.tool_choice.startswith("function:"):
            return self.tool_choice.removeprefix("function:")
        return None


class Piece(msgspec.Struct, frozen=True):
    """The bytes of one decoded token (or a few), from a provider that speaks in tokens.

    `special` marks control tokens (Harmony's `<|channel|>` etc.), which are never text.
    `tokens` is how many model tokens the piece stands for. The pipeline's token decoder
    (Harmony's parser, or plain UTF-8 for chat-template models) turns pieces into messages.
    """

    data: bytes = b""
    special: bool = False
    tokens: int = 1
    logprob: LogprobEntry | None = None


class Open(msgspec.Struct, frozen=True):
    """A message begins: on `channel` (Harmony's names: `analysis`, `final`, `commentary`;
    None for none), addressed to `recipient` when it is a call (`functions.NAME`).

    Token decoders produce these, and so do providers whose backend already speaks in
    messages (an OpenAI-compatible upstream). `call_id` is the backend's id of a call; a
    second `Open` with the same id goes on with that call (streams may interleave calls)."""

    channel: str | None = None
    recipient: str | None = None
    call_id: str | None = None


class Text(msgspec.Struct, frozen=True):
    """Text of the open message, whole characters only.

    `tokens` counts model tokens only where no `Piece` already did (a backend's text);
    `logprobs` are those of the tokens that made the text."""

    text: str
    tokens: int = 0
    logprobs: tuple[LogprobEntry, ...] = ()


class Close(msgspec.Struct, frozen=True):
    """The open message ended."""


class PromptToken(msgspec.Struct, frozen=True):
    """One token of the prompt as the model read it (echo): its bytes, whether it is a
    control token (BOS: no text of the prompt), and its logprob given the tokens before it
    (None for the first token, and when logprobs were not asked for)."""

    data: bytes
    special: bool = False
    logprob: LogprobEntry | None = None


class Report(msgspec.Struct, frozen=True):
    """A backend's own account: how much of the prompt it took from its cache (as soon as
    it read the prompt), and at the end of its stream its token counts and why it stopped.
    With `echo`, the prompt's tokens as it read them (before its first token)."""

    usage: Usage | None = None
    stop: StopReason | None = None
    cached_tokens: int | None = None
    prompt: tuple[PromptToken, ...] = ()


MessageEvent: TypeAlias = Open | Text | Close
"""What a message-shaped stream is made of: what the one channel mapping reads."""

Output: TypeAlias = Piece | Open | Text | Close | Report
"""What a provider yields: token pieces, messages (a backend that already split them), or
its closing report."""


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
    PROMPT = "prompt"
    """The prompt as the model read it (`prompt`), for a completion that echoes it."""


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
    prompt: tuple[PromptToken, ...] = ()
    """A `PROMPT` delta's tokens."""


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
    cached_tokens: int = 0
    """Prompt tokens read from a cache (a reused prefix) instead of evaluated."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens
