"""Translation between the wire and the internal types of `pipelines/`: here only."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal, Protocol

import msgspec

from compat.errors import WireError
from compat.requests import (
    AssistantMessage,
    ChatCompletionRequest,
    Content,
    DeveloperMessage,
    JsonObjectFormat,
    JsonSchemaFormat,
    NamedToolChoice,
    RefusalPart,
    SystemMessage,
    TextPart,
    ToolMessage,
    UserMessage,
    WireMessage,
)
from compat.responses import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChoiceLogprobs,
    ChunkChoice,
    ChunkDelta,
    CompletionTokensDetails,
    FunctionCallWire,
    LogprobWire,
    PromptTokensDetails,
    ResponseMessage,
    ToolCallDelta,
    ToolCallFunctionDelta,
    ToolCallWire,
    TopLogprobWire,
    UsageWire,
)
from pipelines.errors import InvalidRequest, Unsupported
from pipelines.result import PipelineResult
from pipelines.structured import check_schema
from pipelines.types import (
    Delta,
    DeltaKind,
    GenerationRequest,
    LogprobEntry,
    Message,
    ResponseFormat,
    SamplingOverrides,
    Tool,
    ToolCall,
    Usage,
)

__all__ = [
    "EFFORT",
    "ReasoningFields",
    "SamplingWire",
    "StreamEncoder",
    "internal_tool_choice",
    "join_text_parts",
    "json_schema_format",
    "sampling_overrides",
    "to_completion",
    "to_internal",
    "usage_wire",
]

ReasoningFields = Literal["both", "reasoning_content", "reasoning"]

ReasoningEffort = Literal["low", "medium", "high"]

EFFORT: dict[str, ReasoningEffort] = {
    "none": "low",
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
}
"""OpenAI's reasoning efforts onto the three a model here knows (Harmony's `Reasoning:`):
the ones beyond them (`none`, `minimal`, `xhigh`) take the nearest."""


def _flatten(content: Content | None, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return join_text_parts(content, f"{where}.content", text=(TextPart,), refusal=RefusalPart)


def join_text_parts(parts: Sequence[Any], where: str, *, text: tuple[type, ...], refusal: type) -> str:
    """The text of a wire's content parts (`text` types carry `.text`, the `refusal` type
    `.refusal`), one per line; any other part (an image, a file) is a 400 naming it."""
    texts = []
    for j, part in enumerate(parts):
        # by the part's class, which keeps `part` typed as the sequence's items (isinstance
        # with a tuple of classes would narrow it to `object`)
        if issubclass(type(part), text):
            texts.append(part.text)
        elif issubclass(type(part), refusal):
            texts.append(part.refusal)
        else:
            kind = type(part).__struct_config__.tag
            raise Unsupported(
                f"Content parts of type '{kind}' are not supported by this gateway; send text only.",
                param=f"{where}[{j}].type",
            )
    return "\n".join(texts)


def _message(m: WireMessage, i: int) -> Message:
    where = f"messages[{i}]"
    if isinstance(m, AssistantMessage):
        calls = tuple(
            ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments) for c in m.tool_calls or ()
        )
        reasoning = m.reasoning_content if m.reasoning_content is not None else m.reasoning
        return Message(
            role="assistant",
            content=_flatten(m.content, where),
            name=m.name,
            reasoning=reasoning,
            tool_calls=calls,
        )
    if isinstance(m, ToolMessage):
        return Message(role="tool", content=_flatten(m.content, where), tool_call_id=m.tool_call_id)
    assert isinstance(m, SystemMessage | DeveloperMessage | UserMessage)
    role = m.__struct_config__.tag
    return Message(role=role, content=_flatten(m.content, where), name=m.name)  # type: ignore[arg-type]


def _response_format(req: ChatCompletionRequest) -> ResponseFormat:
    rf = req.response_format
    if isinstance(rf, JsonObjectFormat):
        return ResponseFormat(type="json_object")
    if isinstance(rf, JsonSchemaFormat):
        spec = rf.json_schema
        return json_schema_format(
            spec.schema,
            name=spec.name,
            strict=spec.strict,
            description=spec.description,
            field="response_format",
            param="response_format.json_schema.schema",
        )
    return ResponseFormat()


def json_schema_format(
    schema: dict[str, Any] | None,
    *,
    name: str | None,
    strict: bool | None,
    description: str | None,
    field: str,
    param: str,
) -> ResponseFormat:
    """A `json_schema` format as either wire sends it (`field` names the wire's own field):
    a missing schema is a 400 naming `param`, a schema that is not JSON Schema another."""
    if schema is None:
        raise InvalidRequest(f"{field} json_schema needs a 'schema'.", param=param, code="missing_required_parameter")
    check_schema(schema, param=param)
    return ResponseFormat(type="json_schema", schema=schema, name=name, strict=bool(strict), description=description)


def _parameters(schema: dict[str, Any] | None, i: int) -> dict[str, Any] | None:
    if schema is not None:
        check_schema(schema, param=f"tools[{i}].function.parameters")
    return schema


def internal_tool_choice(choice: str | None, tools: tuple[Tool, ...], *, forced: str | None = None) -> str:
    """The internal `tool_choice` (see `GenerationRequest`) of either wire: a mode
    (`auto`, `none`, `required`; None: the default) or a `forced` function's name."""
    if forced is not None:
        if forced not in {t.name for t in tools}:
            raise InvalidRequest(
                f"tool_choice names function '{forced}', which is not among `tools`.", param="tool_choice"
            )
        return f"function:{forced}"
    if choice is None:
        return "auto" if tools else "none"
    if choice == "required" and not tools:
        raise InvalidRequest("tool_choice 'required' needs at least one tool in `tools`.", param="tool_choice")
    return choice


def _tool_choice(req: ChatCompletionRequest, tools: tuple[Tool, ...]) -> str:
    choice = req.tool_choice
    if isinstance(choice, NamedToolChoice):
        return internal_tool_choice(None, tools, forced=choice.function.name)
    return internal_tool_choice(choice, tools)


class SamplingWire(Protocol):
    """The sampling fields the chat and completion requests share."""

    @property
    def temperature(self) -> float | None: ...
    @property
    def top_p(self) -> float | None: ...
    @property
    def top_k(self) -> int | None: ...
    @property
    def min_p(self) -> float | None: ...
    @property
    def presence_penalty(self) -> float | None: ...
    @property
    def frequency_penalty(self) -> float | None: ...
    @property
    def repeat_penalty(self) -> float | None: ...
    @property
    def seed(self) -> int | None: ...


def sampling_overrides(
    req: SamplingWire, *, max_tokens: int | None, reasoning_effort: ReasoningEffort | None = None
) -> SamplingOverrides:
    """The request's sampling layer (None: the request leaves it to the model's defaults)."""
    return SamplingOverrides(
        temperature=req.temperature,
        top_p=req.top_p,
        top_k=req.top_k,
        min_p=req.min_p,
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
        repeat_penalty=req.repeat_penalty,
        seed=req.seed,
        max_tokens=max_tokens,
        reasoning_effort=reasoning_effort,
    )


def to_internal(req: ChatCompletionRequest, request_id: str) -> GenerationRequest:
    """Validates what types cannot and builds the internal request."""
    if req.logit_bias:
        raise Unsupported("logit_bias is not supported by this gateway.", param="logit_bias")
    if req.top_logprobs and not req.logprobs:
        raise InvalidRequest("top_logprobs requires logprobs to be true.", param="top_logprobs")
    if req.stream_options is not None and not req.stream:
        raise InvalidRequest("stream_options is only allowed when stream is true.", param="stream_options")
    stop: tuple[str, ...] = ()
    if isinstance(req.stop, str):
        stop = (req.stop,)
    elif req.stop:
        stop = tuple(req.stop)
    tools = tuple(
        Tool(
            name=t.function.name,
            description=t.function.description,
            parameters=_parameters(t.function.parameters, i),
            strict=t.function.strict,
        )
        for i, t in enumerate(req.tools or ())
    )
    max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    return GenerationRequest(
        request_id=request_id,
        model=req.model,
        messages=tuple(_message(m, i) for i, m in enumerate(req.messages)),
        sampling=sampling_overrides(
            req, max_tokens=max_tokens, reasoning_effort=EFFORT[req.reasoning_effort] if req.reasoning_effort else None
        ),
        preset=req.preset,
        stop=stop,
        stream=bool(req.stream),
        tools=tools,
        tool_choice=_tool_choice(req, tools),
        parallel_tool_calls=req.parallel_tool_calls if req.parallel_tool_calls is not None else True,
        response_format=_response_format(req),
        logprobs=bool(req.logprobs),
        top_logprobs=req.top_logprobs or 0,
        n=req.n or 1,
    )


def _logprob(e: LogprobEntry) -> LogprobWire:
    return LogprobWire(
        token=e.token,
        logprob=e.logprob,
        bytes=e.bytes,
        top_logprobs=[TopLogprobWire(token=t.token, logprob=t.logprob, bytes=t.bytes) for t in e.top_logprobs],
    )


def usage_wire(usage: Usage) -> UsageWire:
    return UsageWire(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.cached_tokens),
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=usage.reasoning_tokens),
    )


def to_completion(
    result: PipelineResult,
    *,
    completion_id: str,
    model: str,
    created: int,
    reasoning_fields: ReasoningFields = "both",
    logprobs: bool = False,
) -> ChatCompletion:
    return ChatCompletion(
        id=completion_id,
        created=created,
        model=model,
        choices=[_choice(c, reasoning_fields, logprobs) for c in result.all_choices],
        usage=usage_wire(result.usage),
    )


def _choice(result: PipelineResult, reasoning_fields: ReasoningFields, logprobs: bool) -> Choice:
    reasoning = result.reasoning or None
    calls = [
        ToolCallWire(id=c.id, function=FunctionCallWire(name=c.name, arguments=c.arguments)) for c in result.tool_calls
    ]
    message = ResponseMessage(
        content=result.content if (result.content or not calls) else None,
        tool_calls=calls or None,
        reasoning_content=reasoning if reasoning_fields != "reasoning" else None,
        reasoning=reasoning if reasoning_fields != "reasoning_content" else None,
    )
    return Choice(
        index=result.index,
        message=message,
        finish_reason=result.finish_reason,
        logprobs=ChoiceLogprobs(content=[_logprob(e) for e in result.logprobs]) if logprobs else None,
    )


class StreamEncoder:
    """Encodes one response's stream as SSE `data:` lines, chunk by chunk."""

    def __init__(
        self,
        *,
        completion_id: str,
        model: str,
        created: int | None = None,
        reasoning_fields: ReasoningFields = "both",
        include_usage: bool = False,
        logprobs: bool = False,
        choices: int = 1,
    ) -> None:
        self._id = completion_id
        self._model = model
        self._created = created if created is not None else int(time.time())
        self._reasoning_fields = reasoning_fields
        self._include_usage = include_usage
        self._logprobs = logprobs
        self._choices = choices
        self._finished: set[int] = set()
        self._encoder = msgspec.json.Encoder()

    def _chunk(
        self, delta: ChunkDelta, finish: str | None = None, logprobs: ChoiceLogprobs | None = None, index: int = 0
    ) -> bytes:
        chunk = ChatCompletionChunk(
            id=self._id,
            created=self._created,
            model=self._model,
            choices=[ChunkChoice(index=index, delta=delta, finish_reason=finish, logprobs=logprobs)],
        )
        return b"data: " + self._encoder.encode(chunk) + b"\n\n"

    def first(self) -> bytes:
        """The role of every choice, before any of them has content."""
        return b"".join(self._chunk(ChunkDelta(role="assistant", content=""), index=i) for i in range(self._choices))

    def delta(self, d: Delta) -> bytes:
        if d.kind is DeltaKind.FINISH:
            self._finished.add(d.choice)
            return self._chunk(ChunkDelta(), finish=d.finish, index=d.choice)
        if d.kind is DeltaKind.CONTENT:
            lp = ChoiceLogprobs(content=[_logprob(e) for e in d.logprobs]) if self._logprobs else None
            return self._chunk(ChunkDelta(content=d.text), logprobs=lp, index=d.choice)
        if d.kind is DeltaKind.REASONING:
            fields = self._reasoning_fields
            return self._chunk(
                ChunkDelta(
                    reasoning_content=d.text if fields != "reasoning" else None,
                    reasoning=d.text if fields != "reasoning_content" else None,
                ),
                index=d.choice,
            )
        call = ToolCallDelta(
            index=d.tool_index,
            id=d.tool_id,
            type="function" if d.tool_id else None,
            function=ToolCallFunctionDelta(name=d.tool_name, arguments=d.text if d.tool_name is None else ""),
        )
        if d.tool_name is not None and d.text:
            # first delta of a call carrying arguments too: name first, arguments in the same object
            call.function = ToolCallFunctionDelta(name=d.tool_name, arguments=d.text)
        return self._chunk(ChunkDelta(tool_calls=[call]), index=d.choice)

    def final(self, result: PipelineResult) -> bytes:
        out = b"".join(
            self._chunk(ChunkDelta(), finish=c.finish_reason, index=c.index)
            for c in result.all_choices
            if c.index not in self._finished
        )
        if self._include_usage:
            chunk = ChatCompletionChunk(
                id=self._id, created=self._created, model=self._model, choices=[], usage=usage_wire(result.usage)
            )
            out += b"data: " + self._encoder.encode(chunk) + b"\n\n"
        return out

    def error(self, body: bytes) -> bytes:
        return b"data: " + body + b"\n\n"

    def failure(self, error: WireError) -> bytes:
        """A failure after the 200: told in band, as the envelope OpenAI sends."""
        return self.error(error.encode())

    @staticmethod
    def done() -> bytes:
        return b"data: [DONE]\n\n"
