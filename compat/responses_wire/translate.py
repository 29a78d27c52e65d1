"""The Responses wire <-> the internal types of `pipelines/`: the request into a
`GenerationRequest` (the same one the chat wire makes), a finished result into the response
object. Channels are not mapped here: the deltas and results already say what is reasoning,
content or a call (`pipelines/channels.py`)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import msgspec

from compat.responses_wire.objects import (
    CustomToolCallOutput,
    FunctionCallOutput,
    IncompleteDetails,
    InputTokensDetails,
    ItemStatus,
    LogprobOut,
    MessageOutput,
    OutputItem,
    OutputTextPart,
    OutputTokensDetails,
    ReasoningEcho,
    ReasoningOutput,
    ReasoningTextPart,
    ResponseObject,
    ResponseUsage,
    TextEcho,
    TopLogprobOut,
)
from compat.responses_wire.request import (
    AdditionalToolsItem,
    Content,
    CustomChoice,
    CustomTool,
    CustomToolCallItem,
    CustomToolCallOutputItem,
    FormatJsonObject,
    FormatJsonSchema,
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionChoice,
    FunctionTool,
    InputItem,
    InputText,
    ItemReference,
    MessageItem,
    NamespaceTool,
    OutputRefusal,
    OutputText,
    ReasoningItem,
    ResponsesRequest,
)
from compat.responses_wire.sealing import ReasoningSeal
from compat.responses_wire.tools import OfferedTools, flat_name
from compat.translate import EFFORT, internal_tool_choice, join_text_parts, json_schema_format
from pipelines.errors import InvalidRequest, Unsupported
from pipelines.types import GenerationRequest, Message, ResponseFormat, SamplingOverrides, ToolCall

if TYPE_CHECKING:
    from pipelines.result import PipelineResult
    from pipelines.types import LogprobEntry

__all__ = [
    "ENCRYPTED_REASONING",
    "LOGPROBS",
    "Translated",
    "call_item",
    "call_prefix",
    "custom_input",
    "finished",
    "flat_name",
    "logprobs_out",
    "message_item",
    "new_item_id",
    "reasoning_item",
    "to_internal",
    "to_response",
]

LOGPROBS = "message.output_text.logprobs"
"""The `include` value that asks for the answer's logprobs."""
ENCRYPTED_REASONING = "reasoning.encrypted_content"
"""The `include` value that asks for reasoning items sealed for the client to send back."""


class Translated(msgspec.Struct, frozen=True, kw_only=True):
    """A Responses request, translated: what the pipelines run, and what the wire answers with."""

    request: GenerationRequest
    template: ResponseObject
    """The response object before any output: what it echoes of the request (`id`,
    `created_at` and the model are the route's to fill)."""
    ignored_tools: tuple[str, ...] = ()
    """Hosted tools left out of the prompt (by `type`, in the order sent)."""
    namespaces: dict[str, tuple[str, str]] = {}
    """Functions of `namespace` tools: the name the model sees (`NS.NAME`) -> (NS, NAME)."""
    custom: frozenset[str] = frozenset()
    """The names (as the model sees them) of `custom` tools: their calls are `custom_tool_call`s."""
    logprobs: bool = False
    asked_store: bool = True
    """Whether the client asked to store the response (OpenAI's default: yes)."""
    seal: ReasoningSeal | None = None
    """Set when `include` asks for `reasoning.encrypted_content`: what seals it."""
    unopened_reasoning: int = 0
    """Reasoning items sent back whose `encrypted_content` did not open (another key)."""


def new_item_id(prefix: str) -> str:
    """`rs_`, `msg_`, `fc_` ... and 48 random hex digits, the length of OpenAI's."""
    return f"{prefix}_{secrets.token_hex(24)}"


# -- request ---------------------------------------------------------------------------------


def _text(content: Content, where: str) -> str:
    if isinstance(content, str):
        return content
    return join_text_parts(content, where, text=(InputText, OutputText), refusal=OutputRefusal)


class _Turns:
    """Input items -> messages. Consecutive assistant-side items (reasoning, an assistant
    message, function calls) are one assistant turn, as the chat wire's assistant message
    with `reasoning` and `tool_calls` is."""

    def __init__(self, seal: ReasoningSeal | None) -> None:
        self.messages: list[Message] = []
        self._seal = seal
        self.unopened = 0
        """Reasoning items whose `encrypted_content` did not open here."""
        self._reasoning: list[str] = []
        self._content: list[str] = []
        self._calls: list[ToolCall] = []

    def flush(self) -> None:
        if self._reasoning or self._content or self._calls:
            self.messages.append(
                Message(
                    role="assistant",
                    content="\n".join(self._content),
                    reasoning="\n".join(self._reasoning) or None,
                    tool_calls=tuple(self._calls),
                )
            )
        self._reasoning, self._content, self._calls = [], [], []

    def add(self, item: InputItem, where: str) -> None:
        if isinstance(item, ReasoningItem):
            # what was sealed (the model's own text, authenticated), else the text itself if
            # sent, else its summary
            sealed = item.encrypted_content
            opened = self._seal.open(sealed) if sealed and self._seal is not None else None
            self.unopened += bool(sealed) and opened is None
            parts = [opened] if opened is not None else [p.text for p in (item.content or item.summary)]
            self._reasoning.extend(parts)
        elif isinstance(item, MessageItem) and item.role == "assistant":
            self._content.append(_text(item.content, f"{where}.content"))
        elif isinstance(item, FunctionCallItem):
            name = flat_name(item.namespace, item.name)
            self._calls.append(ToolCall(id=item.call_id, name=name, arguments=item.arguments))
        elif isinstance(item, CustomToolCallItem):
            arguments = msgspec.json.encode({"input": item.input}).decode()
            self._calls.append(
                ToolCall(id=item.call_id, name=flat_name(item.namespace, item.name), arguments=arguments)
            )
        elif isinstance(item, AdditionalToolsItem):
            pass  # offered with the request's tools (`OfferedTools`)
        elif isinstance(item, ItemReference):
            raise Unsupported("item_reference is not supported; send the item itself.", param=f"{where}.id")
        else:
            self.flush()
            if isinstance(item, MessageItem):
                where = f"{where}.content"
                self.messages.append(Message(role=item.role, content=_text(item.content, where)))
            else:
                assert isinstance(item, FunctionCallOutputItem | CustomToolCallOutputItem)
                output = _text(item.output, f"{where}.output")
                self.messages.append(Message(role="tool", content=output, tool_call_id=item.call_id))


def _response_format(req: ResponsesRequest) -> ResponseFormat:
    fmt = req.text.format if req.text is not None else None
    if isinstance(fmt, FormatJsonObject):
        return ResponseFormat(type="json_object")
    if isinstance(fmt, FormatJsonSchema):
        return json_schema_format(
            fmt.schema,
            name=fmt.name,
            strict=fmt.strict,
            description=fmt.description,
            field="text.format",
            param="text.format.schema",
        )
    return ResponseFormat()


def _refuse_state(req: ResponsesRequest) -> None:
    """What needs a store or a runner the gateway has not got: refused, never pretended."""
    if req.conversation is not None:
        raise Unsupported(
            "conversations are not supported; chain responses with previous_response_id.", param="conversation"
        )
    if req.prompt is not None:
        raise Unsupported("stored prompt templates are not supported.", param="prompt")


def to_internal(
    req: ResponsesRequest,
    request_id: str,
    *,
    hosted: Literal["ignore", "refuse"] = "ignore",
    history: Sequence[InputItem] = (),
    seal: ReasoningSeal | None = None,
) -> Translated:
    """Validates what types cannot and builds the internal request and the response's echo.
    Hosted tools are left out (`ignored_tools`), or refused with a 400 naming the first.
    `history`: the stored conversation `previous_response_id` stands for, before `input`.
    `seal` opens reasoning sent back sealed, and seals the answer's when `include` asks."""
    _refuse_state(req)
    offered = OfferedTools(req, refuse_hosted=hosted == "refuse")
    tools = tuple(offered.tools)
    choice = req.tool_choice
    if isinstance(choice, CustomChoice | FunctionChoice):
        tool_choice = internal_tool_choice(None, tools, forced=choice.name)
    else:
        tool_choice = internal_tool_choice(choice, tools)
    turns = _Turns(seal)
    if req.instructions:
        turns.messages.append(Message(role="developer", content=req.instructions))
    for item in history:
        turns.add(item, "previous_response_id")
    if isinstance(req.input, str):
        turns.flush()
        turns.messages.append(Message(role="user", content=req.input))
    else:
        for i, item in enumerate(req.input):
            turns.add(item, f"input[{i}]")
        turns.flush()
    if not turns.messages:
        raise InvalidRequest("The input holds no message.", param="input")
    logprobs = LOGPROBS in (req.include or ())
    effort = req.reasoning.effort if req.reasoning is not None else None
    request = GenerationRequest(
        request_id=request_id,
        model=req.model,
        messages=tuple(turns.messages),
        sampling=SamplingOverrides(
            temperature=req.temperature,
            top_p=req.top_p,
            max_tokens=req.max_output_tokens,
            reasoning_effort=EFFORT[effort] if effort else None,
        ),
        stream=bool(req.stream),
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=req.parallel_tool_calls if req.parallel_tool_calls is not None else True,
        response_format=_response_format(req),
        logprobs=logprobs,
        top_logprobs=(req.top_logprobs or 0) if logprobs else 0,
        messages_param="input",
    )
    return Translated(
        request=request,
        template=_template(req),
        ignored_tools=tuple(offered.ignored),
        namespaces=offered.namespaces,
        custom=frozenset(offered.custom),
        logprobs=logprobs,
        asked_store=req.store is not False,
        seal=seal if ENCRYPTED_REASONING in (req.include or ()) else None,
        unopened_reasoning=turns.unopened,
    )


def _template(req: ResponsesRequest) -> ResponseObject:
    offered = [t for t in req.tools or () if isinstance(t, FunctionTool | CustomTool | NamespaceTool)]
    reasoning = req.reasoning
    return ResponseObject(
        id="",
        created_at=0,
        model=req.model,
        instructions=req.instructions,
        max_output_tokens=req.max_output_tokens,
        parallel_tool_calls=req.parallel_tool_calls if req.parallel_tool_calls is not None else True,
        previous_response_id=req.previous_response_id,
        prompt_cache_key=req.prompt_cache_key,
        reasoning=ReasoningEcho(
            effort=reasoning.effort if reasoning else None,
            summary=(reasoning.summary or reasoning.generate_summary) if reasoning else None,
        ),
        safety_identifier=req.safety_identifier,
        text=TextEcho(
            format=(req.text.format if req.text and req.text.format else TextEcho().format),
            verbosity=(req.text.verbosity if req.text and req.text.verbosity else "medium"),
        ),
        tool_choice=req.tool_choice or ("auto" if offered else "none"),
        tools=offered,
        temperature=req.temperature,
        top_p=req.top_p,
        top_logprobs=req.top_logprobs or 0,
        truncation=req.truncation or "disabled",
        user=req.user,
        metadata=req.metadata or {},
    )


# -- response --------------------------------------------------------------------------------


def logprobs_out(entries: tuple[LogprobEntry, ...]) -> list[LogprobOut]:
    return [
        LogprobOut(
            token=e.token,
            logprob=e.logprob,
            bytes=e.bytes,
            top_logprobs=[TopLogprobOut(token=t.token, logprob=t.logprob, bytes=t.bytes) for t in e.top_logprobs],
        )
        for e in entries
    ]


def reasoning_item(item_id: str, text: str, status: ItemStatus, seal: ReasoningSeal | None) -> ReasoningOutput:
    sealed = seal.seal(text) if seal is not None else None
    return ReasoningOutput(id=item_id, content=[ReasoningTextPart(text=text)], status=status, encrypted_content=sealed)


def message_item(item_id: str, text: str, logprobs: list[LogprobOut], status: ItemStatus) -> MessageOutput:
    return MessageOutput(id=item_id, status=status, content=[OutputTextPart(text=text, logprobs=logprobs)])


def call_prefix(name: str, translated: Translated) -> str:
    """The id prefix of a call's item: `ctc` for a custom tool's, `fc` for a function's."""
    return "ctc" if name in translated.custom else "fc"


def call_item(
    item_id: str, call: ToolCall, translated: Translated, status: ItemStatus
) -> FunctionCallOutput | CustomToolCallOutput:
    """A call with the name the client gave its tool (and its namespace, if any)."""
    namespace, name = translated.namespaces.get(call.name, (None, call.name))
    if call.name in translated.custom:
        return CustomToolCallOutput(
            id=item_id, call_id=call.id, name=name, input=custom_input(call.arguments), namespace=namespace
        )
    return FunctionCallOutput(
        id=item_id, call_id=call.id, name=name, arguments=call.arguments, status=status, namespace=namespace
    )


def custom_input(arguments: str) -> str:
    """A custom tool's free text from the arguments of the function the model saw (or
    the arguments themselves, if the model did not write `{"input": "..."}`)."""
    try:
        decoded = msgspec.json.decode(arguments)
    except msgspec.DecodeError:
        return arguments
    if isinstance(decoded, dict) and isinstance(decoded.get("input"), str):
        return str(decoded["input"])
    return arguments


def _usage(result: PipelineResult) -> ResponseUsage:
    usage = result.usage
    return ResponseUsage(
        input_tokens=usage.prompt_tokens,
        input_tokens_details=InputTokensDetails(cached_tokens=result.usage.cached_tokens),
        output_tokens=usage.completion_tokens,
        output_tokens_details=OutputTokensDetails(reasoning_tokens=usage.reasoning_tokens),
        total_tokens=usage.total_tokens,
    )


def finished(template: ResponseObject, result: PipelineResult, output: list[OutputItem]) -> ResponseObject:
    """The response at its end: `completed`, or `incomplete` when the output cap (or a
    content filter) cut it short."""
    if result.finish_reason in ("length", "content_filter"):
        reason: Literal["max_output_tokens", "content_filter"] = (
            "max_output_tokens" if result.finish_reason == "length" else "content_filter"
        )
        return msgspec.structs.replace(
            template,
            status="incomplete",
            incomplete_details=IncompleteDetails(reason=reason),
            output=output,
            usage=_usage(result),
        )
    return msgspec.structs.replace(
        template, status="completed", completed_at=int(time.time()), output=output, usage=_usage(result)
    )


def to_response(result: PipelineResult, translated: Translated, template: ResponseObject) -> ResponseObject:
    """A non-stream answer: its reasoning, its message, then its calls, in the order a
    Harmony model writes them (the last one `incomplete` if the output was cut short): the
    items its stream would have had, with each kind's text in one item."""
    complete = result.finish_reason not in ("length", "content_filter")
    output: list[OutputItem] = []
    if result.reasoning:
        output.append(reasoning_item(new_item_id("rs"), result.reasoning, "completed", translated.seal))
    if result.content or not (result.reasoning or result.tool_calls):
        # an answer with nothing else is still one (empty) message; one cut short while
        # reasoning is its reasoning only, as the stream tells it
        lp = logprobs_out(result.logprobs) if translated.logprobs else []
        output.append(message_item(new_item_id("msg"), result.content, lp, "completed"))
    for call in result.tool_calls:
        output.append(call_item(new_item_id(call_prefix(call.name, translated)), call, translated, "completed"))
    if not complete and not isinstance(output[-1], CustomToolCallOutput):
        output[-1] = msgspec.structs.replace(output[-1], status="incomplete")
    return finished(template, result, output)
