"""What `/v1/responses` answers: the response object, its output items and usage, and the
stream's events, field for field as OpenAI returns them (the openai SDK's models in
`openai/types/responses/` are the reference the tests validate against)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from compat.responses_wire.request import (
    CustomChoice,
    CustomTool,
    FormatJsonObject,
    FormatJsonSchema,
    FormatText,
    FunctionChoice,
    FunctionTool,
    NamespaceTool,
)

__all__ = [
    "ContentPartAdded",
    "ContentPartDone",
    "CustomToolCallInputDelta",
    "CustomToolCallInputDone",
    "CustomToolCallOutput",
    "ErrorEvent",
    "FunctionCallArgumentsDelta",
    "FunctionCallArgumentsDone",
    "FunctionCallOutput",
    "IncompleteDetails",
    "InputTokenCount",
    "InputTokensDetails",
    "ItemStatus",
    "LogprobOut",
    "MessageOutput",
    "OutputItem",
    "OutputItemAdded",
    "OutputItemDone",
    "OutputTextDelta",
    "OutputTextDone",
    "OutputTextPart",
    "OutputTokensDetails",
    "ReasoningEcho",
    "ReasoningOutput",
    "ReasoningTextDelta",
    "ReasoningTextDone",
    "ReasoningTextPart",
    "ResponseCompleted",
    "ResponseCreated",
    "ResponseError",
    "ResponseFailed",
    "ResponseInProgress",
    "ResponseIncomplete",
    "ResponseObject",
    "ResponseUsage",
    "StreamEvent",
    "TextEcho",
    "TopLogprobOut",
]

ItemStatus = Literal["in_progress", "completed", "incomplete"]


class _Out(msgspec.Struct, kw_only=True):
    """Response-side objects keep OpenAI's nulls (`error: null`, `incomplete_details: null`)."""


class TopLogprobOut(_Out):
    token: str
    logprob: float
    bytes: list[int]


class LogprobOut(_Out):
    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[TopLogprobOut]


class OutputTextPart(_Out, tag="output_text", tag_field="type"):
    text: str
    annotations: list[Any] = []
    logprobs: list[LogprobOut] = []
    """Filled when `include` asks for `message.output_text.logprobs`."""


class ReasoningTextPart(_Out, tag="reasoning_text", tag_field="type"):
    text: str


class ReasoningOutput(_Out, tag="reasoning", tag_field="type"):
    """Harmony's `analysis` channel, as the model wrote it (there is no summariser here:
    `summary` stays empty)."""

    id: str
    summary: list[Any] = []
    content: list[ReasoningTextPart] = []
    encrypted_content: str | None = None
    """The content sealed for the client to send back, when `include` asks (`sealing.py`)."""
    status: ItemStatus = "completed"


class MessageOutput(_Out, tag="message", tag_field="type"):
    id: str
    status: ItemStatus
    content: list[OutputTextPart]
    role: Literal["assistant"] = "assistant"


class FunctionCallOutput(msgspec.Struct, kw_only=True, omit_defaults=True, tag="function_call", tag_field="type"):
    """`namespace` only for a function of a `namespace` tool (absent otherwise, as OpenAI sends it)."""

    id: str
    call_id: str
    name: str
    arguments: str
    status: ItemStatus
    namespace: str | None = None


class CustomToolCallOutput(msgspec.Struct, kw_only=True, omit_defaults=True, tag="custom_tool_call", tag_field="type"):
    """A call of a `custom` (free-text) tool: `input` is the text the model gave it."""

    id: str
    call_id: str
    name: str
    input: str
    namespace: str | None = None


OutputItem = ReasoningOutput | MessageOutput | FunctionCallOutput | CustomToolCallOutput


class InputTokensDetails(_Out):
    cached_tokens: int = 0
    """Prompt tokens read from the prefix cache instead of evaluated."""
    cache_write_tokens: int = 0


class OutputTokensDetails(_Out):
    reasoning_tokens: int = 0


class ResponseUsage(_Out):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class IncompleteDetails(_Out):
    reason: Literal["max_output_tokens", "content_filter"]


class ResponseError(_Out):
    code: str
    message: str


class ReasoningEcho(_Out):
    effort: str | None = None
    summary: str | None = None


class TextEcho(_Out):
    format: FormatText | FormatJsonObject | FormatJsonSchema = msgspec.field(default_factory=FormatText)
    verbosity: str = "medium"


class InputTokenCount(_Out, kw_only=True):
    """`POST /v1/responses/input_tokens`: the request's input, counted on its model."""

    object: Literal["response.input_tokens"] = "response.input_tokens"
    input_tokens: int


class ResponseObject(_Out, kw_only=True):
    """The response, in OpenAI's field order. `store`: whether it was stored (the route's to set)."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["completed", "failed", "in_progress", "cancelled", "queued", "incomplete"] = "in_progress"
    background: bool = False
    completed_at: int | None = None
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    max_tool_calls: int | None = None
    model: str
    output: list[OutputItem] = []
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    prompt_cache_key: str | None = None
    reasoning: ReasoningEcho = msgspec.field(default_factory=ReasoningEcho)
    safety_identifier: str | None = None
    service_tier: str = "default"
    store: bool = False
    temperature: float | None = None
    text: TextEcho = msgspec.field(default_factory=TextEcho)
    tool_choice: Literal["none", "auto", "required"] | FunctionChoice | CustomChoice = "auto"
    tools: list[FunctionTool | CustomTool | NamespaceTool] = []
    top_logprobs: int = 0
    top_p: float | None = None
    truncation: Literal["auto", "disabled"] = "disabled"
    usage: ResponseUsage | None = None
    user: str | None = None
    metadata: dict[str, str] = {}


# -- stream events ---------------------------------------------------------------------------


class _Event(msgspec.Struct, kw_only=True, tag_field="type"):
    sequence_number: int


class ResponseCreated(_Event, tag="response.created"):
    response: ResponseObject


class ResponseInProgress(_Event, tag="response.in_progress"):
    response: ResponseObject


class ResponseCompleted(_Event, tag="response.completed"):
    response: ResponseObject


class ResponseIncomplete(_Event, tag="response.incomplete"):
    response: ResponseObject


class ResponseFailed(_Event, tag="response.failed"):
    response: ResponseObject


class OutputItemAdded(_Event, tag="response.output_item.added"):
    output_index: int
    item: OutputItem


class OutputItemDone(_Event, tag="response.output_item.done"):
    output_index: int
    item: OutputItem


class ContentPartAdded(_Event, tag="response.content_part.added"):
    item_id: str
    output_index: int
    content_index: int
    part: OutputTextPart | ReasoningTextPart


class ContentPartDone(_Event, tag="response.content_part.done"):
    item_id: str
    output_index: int
    content_index: int
    part: OutputTextPart | ReasoningTextPart


class OutputTextDelta(_Event, tag="response.output_text.delta"):
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[LogprobOut]


class OutputTextDone(_Event, tag="response.output_text.done"):
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[LogprobOut]


class ReasoningTextDelta(_Event, tag="response.reasoning_text.delta"):
    item_id: str
    output_index: int
    content_index: int
    delta: str


class ReasoningTextDone(_Event, tag="response.reasoning_text.done"):
    item_id: str
    output_index: int
    content_index: int
    text: str


class FunctionCallArgumentsDelta(_Event, tag="response.function_call_arguments.delta"):
    item_id: str
    output_index: int
    delta: str


class FunctionCallArgumentsDone(_Event, tag="response.function_call_arguments.done"):
    item_id: str
    output_index: int
    arguments: str


class CustomToolCallInputDelta(_Event, tag="response.custom_tool_call_input.delta"):
    item_id: str
    output_index: int
    delta: str


class CustomToolCallInputDone(_Event, tag="response.custom_tool_call_input.done"):
    item_id: str
    output_index: int
    input: str


class ErrorEvent(_Event, tag="error"):
    """A failure after the stream's 200: the envelope's fields, flat, as OpenAI sends them."""

    code: str | None
    message: str
    param: str | None


StreamEvent = (
    ResponseCreated
    | ResponseInProgress
    | ResponseCompleted
    | ResponseIncomplete
    | ResponseFailed
    | OutputItemAdded
    | OutputItemDone
    | ContentPartAdded
    | ContentPartDone
    | OutputTextDelta
    | OutputTextDone
    | ReasoningTextDelta
    | ReasoningTextDone
    | FunctionCallArgumentsDelta
    | FunctionCallArgumentsDone
    | CustomToolCallInputDelta
    | CustomToolCallInputDone
    | ErrorEvent
)
