"""The Responses request (`POST /v1/responses`) as OpenAI documents it, in its order.

Known fields are validated strictly by their types; unknown fields are accepted and ignored
(SDKs send fields we do not model). Input items may come without `type`: OpenAI's "easy"
messages are `{"role": ..., "content": ...}`, which msgspec cannot tell apart by a tag it
does not find (see `decode_responses_request`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

import msgspec
from msgspec import Meta

from compat.requests import HUGE_TOKEN_LIMIT

__all__ = [
    "HOSTED_TOOLS",
    "AdditionalToolsItem",
    "CustomChoice",
    "CustomTool",
    "CustomToolCallItem",
    "CustomToolCallOutputItem",
    "FormatJsonObject",
    "FormatJsonSchema",
    "FormatText",
    "FunctionCallItem",
    "FunctionCallOutputItem",
    "FunctionChoice",
    "FunctionTool",
    "HostedTool",
    "InputFile",
    "InputImage",
    "InputItem",
    "InputText",
    "ItemReference",
    "MessageItem",
    "NamespaceTool",
    "OutputRefusal",
    "OutputText",
    "ReasoningConfig",
    "ReasoningItem",
    "ResponsesRequest",
    "TextConfig",
    "ToolWire",
    "decode_responses_request",
]


class _Wire(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Request-side wire objects: unknown keys are ignored, absent keys stay None."""


# -- content parts ---------------------------------------------------------------------------


class InputText(_Wire, tag="input_text", tag_field="type"):
    text: str


class OutputText(_Wire, tag="output_text", tag_field="type"):
    """An earlier answer's text, sent back (its annotations and logprobs are not read)."""

    text: str


class OutputRefusal(_Wire, tag="refusal", tag_field="type"):
    refusal: str


class InputImage(_Wire, tag="input_image", tag_field="type"):
    """Modelled so that it is refused by name (`param`), not as an unknown type."""

    image_url: str | None = None
    file_id: str | None = None


class InputFile(_Wire, tag="input_file", tag_field="type"):
    file_id: str | None = None
    filename: str | None = None


class InputAudio(_Wire, tag="input_audio", tag_field="type"):
    input_audio: dict[str, Any] | None = None


ContentPart = InputText | OutputText | OutputRefusal | InputImage | InputFile | InputAudio
Content = str | list[ContentPart]


class SummaryText(_Wire, tag="summary_text", tag_field="type"):
    text: str


class ReasoningText(_Wire, tag="reasoning_text", tag_field="type"):
    text: str


# -- input items -----------------------------------------------------------------------------


class MessageItem(_Wire, tag="message", tag_field="type"):
    role: Literal["user", "system", "developer", "assistant"]
    content: Content
    id: str | None = None
    status: str | None = None


class FunctionCallItem(_Wire, tag="function_call", tag_field="type"):
    call_id: str
    name: str
    arguments: str
    id: str | None = None
    namespace: str | None = None
    """Set when the function belongs to a `namespace` tool (the call's `name` is then the
    function's own name within it)."""
    status: str | None = None


class FunctionCallOutputItem(_Wire, tag="function_call_output", tag_field="type"):
    call_id: str
    output: Content
    id: str | None = None
    status: str | None = None


class ReasoningItem(_Wire, tag="reasoning", tag_field="type"):
    summary: list[SummaryText] = []
    content: list[ReasoningText] | None = None
    encrypted_content: str | None = None
    id: str | None = None
    status: str | None = None


class CustomToolCallItem(_Wire, tag="custom_tool_call", tag_field="type"):
    call_id: str
    name: str
    input: str
    id: str | None = None
    namespace: str | None = None


class CustomToolCallOutputItem(_Wire, tag="custom_tool_call_output", tag_field="type"):
    call_id: str
    output: Content
    id: str | None = None


class AdditionalToolsItem(_Wire, tag="additional_tools", tag_field="type"):
    """Tools made available from this point of the input on (Codex sends its whole toolset
    so for some models): offered to the model with the request's `tools`."""

    role: Literal["developer"]
    tools: list[ToolWire]
    id: str | None = None


class ItemReference(_Wire, tag="item_reference", tag_field="type"):
    """A stored item by id: refused (send the item itself)."""

    id: str


InputItem = (
    MessageItem
    | FunctionCallItem
    | FunctionCallOutputItem
    | ReasoningItem
    | CustomToolCallItem
    | CustomToolCallOutputItem
    | AdditionalToolsItem
    | ItemReference
)

# -- tools -----------------------------------------------------------------------------------

FunctionName = Annotated[str, Meta(pattern=r"^[a-zA-Z0-9_.-]{1,64}$")]


class FunctionTool(_Wire, tag="function", tag_field="type"):
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class CustomTool(_Wire, tag="custom", tag_field="type"):
    """A tool that takes free text: offered to the model as a function of one string, `input`."""

    name: FunctionName
    description: str | None = None
    format: dict[str, Any] | None = None


class NamespaceTool(_Wire, tag="namespace", tag_field="type"):
    """Functions grouped under a name (Codex's `multi_agent_v1`): offered to the model as
    functions named `NAMESPACE.NAME`, and their calls returned with `namespace` and `name`
    apart, as the client defined them."""

    name: Annotated[str, Meta(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: str
    tools: list[FunctionTool | CustomTool]


class HostedTool(_Wire):
    """A tool OpenAI runs on its side; the gateway cannot, and leaves it out of the prompt."""


class _WebSearch(HostedTool, tag="web_search", tag_field="type"):
    pass


class _WebSearchPreview(HostedTool, tag="web_search_preview", tag_field="type"):
    pass


class _WebSearchDated(HostedTool, tag="web_search_2025_08_26", tag_field="type"):
    pass


class _WebSearchPreviewDated(HostedTool, tag="web_search_preview_2025_03_11", tag_field="type"):
    pass


class _FileSearch(HostedTool, tag="file_search", tag_field="type"):
    pass


class _CodeInterpreter(HostedTool, tag="code_interpreter", tag_field="type"):
    pass


class _ComputerUse(HostedTool, tag="computer_use", tag_field="type"):
    pass


class _ComputerUsePreview(HostedTool, tag="computer_use_preview", tag_field="type"):
    pass


class _ImageGeneration(HostedTool, tag="image_generation", tag_field="type"):
    pass


class _Mcp(HostedTool, tag="mcp", tag_field="type"):
    pass


class _ToolSearch(HostedTool, tag="tool_search", tag_field="type"):
    """Loading deferred tools by search (Codex sends it for the models it knows): whether
    OpenAI runs it or the client does, it needs a protocol of its own, so it is left out."""


_Hosted = (
    _WebSearch
    | _WebSearchPreview
    | _WebSearchDated
    | _WebSearchPreviewDated
    | _FileSearch
    | _CodeInterpreter
    | _ComputerUse
    | _ComputerUsePreview
    | _ImageGeneration
    | _Mcp
    | _ToolSearch
)
HOSTED_TOOLS: tuple[str, ...] = tuple(str(t.__struct_config__.tag) for t in get_args(_Hosted))
"""The `type`s of the hosted tools, left out of the prompt (and named in a header)."""
ToolWire = FunctionTool | CustomTool | NamespaceTool | _Hosted


class FunctionChoice(_Wire, tag="function", tag_field="type"):
    name: str


class CustomChoice(_Wire, tag="custom", tag_field="type"):
    name: str


# -- text and reasoning ----------------------------------------------------------------------


class FormatText(_Wire, tag="text", tag_field="type"):
    pass


class FormatJsonObject(_Wire, tag="json_object", tag_field="type"):
    pass


class FormatJsonSchema(_Wire, tag="json_schema", tag_field="type"):
    name: Annotated[str, Meta(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class TextConfig(_Wire):
    format: FormatText | FormatJsonObject | FormatJsonSchema | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(_Wire):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class ResponsesRequest(_Wire):
    """POST /v1/responses."""

    model: str
    input: str | list[InputItem]
    background: bool | None = None
    conversation: str | dict[str, Any] | None = None
    """Refused: responses chain by `previous_response_id` here."""
    include: list[str] | None = None
    instructions: str | None = None
    max_output_tokens: Annotated[int, Meta(ge=1, le=HUGE_TOKEN_LIMIT)] | None = None
    """Above the model's and the gateway's caps it is capped, as chat's `max_tokens` is."""
    metadata: dict[str, str] | None = None
    parallel_tool_calls: bool | None = None
    previous_response_id: str | None = None
    prompt: dict[str, Any] | None = None
    """A stored prompt template: refused, there are none here."""
    prompt_cache_key: str | None = None
    reasoning: ReasoningConfig | None = None
    safety_identifier: str | None = None
    service_tier: str | None = None
    store: bool | None = None
    stream: bool | None = None
    temperature: Annotated[float, Meta(ge=0.0, le=2.0)] | None = None
    text: TextConfig | None = None
    tool_choice: Literal["none", "auto", "required"] | FunctionChoice | CustomChoice | None = None
    tools: list[ToolWire] | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    top_p: Annotated[float, Meta(ge=0.0, le=1.0)] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    user: str | None = None
    client_metadata: dict[str, Any] | None = None
    """Codex sends it; nothing to do with it."""


_DECODER = msgspec.json.Decoder(ResponsesRequest)


def _untyped(item: object) -> bool:
    return isinstance(item, dict) and "type" not in item and "role" in item


def decode_responses_request(body: bytes) -> ResponsesRequest:
    """Decodes and validates a body; raises `msgspec.DecodeError` (with its `- at $.path`)
    for one that is not a request.

    One typed decode serves a body whose items all carry their `type`. Only a body that
    fails it is read again untyped: if it holds messages without `type`, they are named
    `message` and the body converted; otherwise (or if it cannot be read untyped either:
    a number out of range) the first error, with its exact path, stands."""
    try:
        return _DECODER.decode(body)
    except msgspec.ValidationError as exc:
        first = exc
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise first from None
    items = raw.get("input") if isinstance(raw, dict) else None
    if not isinstance(items, list) or not any(_untyped(item) for item in items):
        raise first
    raw["input"] = [{**item, "type": "message"} if _untyped(item) else item for item in items]
    return msgspec.convert(raw, ResponsesRequest)
