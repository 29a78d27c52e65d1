"""One response's stream: internal `Delta`s in, OpenAI's server-sent events out.

Each run of deltas of one kind is one output item: reasoning becomes a `reasoning` item,
content a `message`, each call a `function_call` (a `custom_tool_call` for a custom tool,
whose free text is sent whole when the call ends), in the order the model wrote them (a
Harmony model: analysis, perhaps a preamble, then its calls). A text item ends when
anything else begins; calls end with the response, so that arguments a backend sends to an
earlier call still reach it before its `done` (an upstream may interleave calls). Every
item is announced (`output_item.added`, `content_part.added`), grows by deltas and is
closed by its `done` events, which carry the whole text, before the final
`response.completed` / `response.incomplete` carries them all."""

from __future__ import annotations

from typing import Any

import msgspec

from compat.errors import WireError
from compat.responses_wire.objects import (
    ContentPartAdded,
    ContentPartDone,
    CustomToolCallInputDelta,
    CustomToolCallInputDone,
    CustomToolCallOutput,
    ErrorEvent,
    FunctionCallArgumentsDelta,
    FunctionCallArgumentsDone,
    ItemStatus,
    LogprobOut,
    MessageOutput,
    OutputItem,
    OutputItemAdded,
    OutputItemDone,
    OutputTextDelta,
    OutputTextDone,
    OutputTextPart,
    ReasoningOutput,
    ReasoningTextDelta,
    ReasoningTextDone,
    ReasoningTextPart,
    ResponseCompleted,
    ResponseCreated,
    ResponseError,
    ResponseFailed,
    ResponseIncomplete,
    ResponseInProgress,
    ResponseObject,
)
from compat.responses_wire.translate import (
    Translated,
    call_item,
    call_prefix,
    finished,
    logprobs_out,
    message_item,
    new_item_id,
    reasoning_item,
)
from pipelines.result import PipelineResult
from pipelines.types import Delta, DeltaKind, ToolCall

__all__ = ["ResponseStreamEncoder"]


class _Item:
    """An output item still being written."""

    __slots__ = ("call", "id", "index", "kind", "logprobs", "parts")

    def __init__(self, kind: DeltaKind, index: int, item_id: str, call: ToolCall | None = None) -> None:
        self.kind = kind
        self.index = index
        self.id = item_id
        self.call = call
        self.parts: list[str] = []
        self.logprobs: list[LogprobOut] = []

    def wire(self, status: ItemStatus, translated: Translated) -> OutputItem:
        text = "".join(self.parts)
        if self.kind is DeltaKind.REASONING:
            return reasoning_item(self.id, text, status, translated.seal)
        if self.kind is DeltaKind.CONTENT:
            return message_item(self.id, text, self.logprobs, status)
        assert self.call is not None
        return call_item(self.id, ToolCall(self.call.id, self.call.name, text), translated, status)


class ResponseStreamEncoder:
    """Encodes one response's stream as `event:` / `data:` pairs, delta by delta."""

    def __init__(self, template: ResponseObject, translated: Translated) -> None:
        self._template = template
        self._translated = translated
        self._logprobs = translated.logprobs
        self._seq = 0
        self._output: list[OutputItem | None] = []
        """Items by `output_index`: None while one is still open."""
        self._text: _Item | None = None
        """The open reasoning or message item."""
        self._calls: dict[int, _Item] = {}
        """Open calls by their internal `tool_index`."""
        self._encoder = msgspec.json.Encoder()
        self.response: ResponseObject | None = None
        """The whole response, once `final` has encoded it (what a stored response stores)."""

    def _emit(self, cls: Any, **fields: Any) -> bytes:
        event = cls(sequence_number=self._seq, **fields)
        self._seq += 1
        return b"event: " + cls.__struct_config__.tag.encode() + b"\ndata: " + self._encoder.encode(event) + b"\n\n"

    def first(self) -> bytes:
        return self._emit(ResponseCreated, response=self._template) + self._emit(
            ResponseInProgress, response=self._template
        )

    def delta(self, d: Delta) -> bytes:
        if d.kind is DeltaKind.TOOL_CALL:
            return self._call_delta(d)
        if d.kind is DeltaKind.FINISH:
            return b""  # a choice's end: this wire has one choice, ended by `final`
        out = b""
        item = self._text
        if item is None or item.kind is not d.kind:
            out += self._close_text("completed")
            item = self._open_text(d.kind)
            out += self._added(item)
        item.parts.append(d.text)
        if d.kind is DeltaKind.REASONING:
            return out + self._emit(
                ReasoningTextDelta, item_id=item.id, output_index=item.index, content_index=0, delta=d.text
            )
        lp = logprobs_out(d.logprobs) if self._logprobs else []
        item.logprobs.extend(lp)
        return out + self._emit(
            OutputTextDelta, item_id=item.id, output_index=item.index, content_index=0, delta=d.text, logprobs=lp
        )

    def _open_text(self, kind: DeltaKind) -> _Item:
        item = self._text = _Item(kind, len(self._output), new_item_id("rs" if kind is DeltaKind.REASONING else "msg"))
        self._output.append(None)
        return item

    def _added(self, item: _Item) -> bytes:
        shell: OutputItem
        part: OutputTextPart | ReasoningTextPart
        if item.kind is DeltaKind.REASONING:
            shell, part = ReasoningOutput(id=item.id, status="in_progress"), ReasoningTextPart(text="")
        else:
            shell = MessageOutput(id=item.id, status="in_progress", content=[])
            part = OutputTextPart(text="")
        return self._emit(OutputItemAdded, output_index=item.index, item=shell) + self._emit(
            ContentPartAdded, item_id=item.id, output_index=item.index, content_index=0, part=part
        )

    def _close_text(self, status: ItemStatus) -> bytes:
        item = self._text
        if item is None:
            return b""
        self._text = None
        done = item.wire(status, self._translated)
        self._output[item.index] = done
        where = {"item_id": item.id, "output_index": item.index, "content_index": 0}
        if isinstance(done, ReasoningOutput):
            part: OutputTextPart | ReasoningTextPart = done.content[0]
            out = self._emit(ReasoningTextDone, text=done.content[0].text, **where)
        else:
            assert isinstance(done, MessageOutput)
            part = done.content[0]
            out = self._emit(OutputTextDone, text=part.text, logprobs=done.content[0].logprobs, **where)
        out += self._emit(ContentPartDone, part=part, **where)
        return out + self._emit(OutputItemDone, output_index=item.index, item=done)

    def _call_delta(self, d: Delta) -> bytes:
        out = b""
        item = self._calls.get(d.tool_index)
        if d.tool_id is not None and d.tool_name is not None:
            out += self._close_text("completed")
            call = ToolCall(d.tool_id, d.tool_name, "")
            item_id = new_item_id(call_prefix(call.name, self._translated))
            item = self._calls[d.tool_index] = _Item(DeltaKind.TOOL_CALL, len(self._output), item_id, call)
            self._output.append(None)
            shell = call_item(item.id, call, self._translated, "in_progress")
            out += self._emit(OutputItemAdded, output_index=item.index, item=shell)
        if item is None or not d.text:
            return out
        item.parts.append(d.text)
        assert item.call is not None
        if item.call.name in self._translated.custom:
            # the model writes `{"input": "..."}`: the free text is known whole at the end only
            return out
        return out + self._emit(FunctionCallArgumentsDelta, item_id=item.id, output_index=item.index, delta=d.text)

    def _close_calls(self, status: ItemStatus) -> bytes:
        out = b""
        for item in sorted(self._calls.values(), key=lambda c: c.index):
            done = item.wire(status, self._translated)
            self._output[item.index] = done
            where = {"item_id": item.id, "output_index": item.index}
            if isinstance(done, CustomToolCallOutput):
                if done.input:
                    out += self._emit(CustomToolCallInputDelta, delta=done.input, **where)
                out += self._emit(CustomToolCallInputDone, input=done.input, **where)
            else:
                assert not isinstance(done, ReasoningOutput | MessageOutput)
                out += self._emit(FunctionCallArgumentsDone, arguments=done.arguments, **where)
            out += self._emit(OutputItemDone, output_index=item.index, item=done)
        self._calls.clear()
        return out

    def final(self, result: PipelineResult) -> bytes:
        """Closes what is open and sends the whole response."""
        status: ItemStatus = "incomplete" if result.finish_reason in ("length", "content_filter") else "completed"
        out = b""
        if not self._output:
            # an answer with no text at all is still one (empty) message, as the non-stream answer has
            out += self._added(self._open_text(DeltaKind.CONTENT))
        out += self._close_text(status) + self._close_calls(status)
        response = self.response = finished(self._template, result, [i for i in self._output if i is not None])
        kind = ResponseIncomplete if response.status == "incomplete" else ResponseCompleted
        return out + self._emit(kind, response=response)

    def failure(self, error: WireError) -> bytes:
        """A failure after the 200: the error in band, then the response as it stood, `failed`."""
        body = error.body.error
        out = self._emit(ErrorEvent, code=body.code or body.type, message=body.message, param=body.param)
        still_open = {i.index: i for i in (self._text, *self._calls.values()) if i is not None}
        output = [
            item if item is not None else still_open[n].wire("incomplete", self._translated)
            for n, item in enumerate(self._output)
        ]
        code = "rate_limit_exceeded" if error.status == 429 else "server_error"
        response = msgspec.structs.replace(
            self._template, status="failed", error=ResponseError(code=code, message=body.message), output=output
        )
        return out + self._emit(ResponseFailed, response=response)

    @staticmethod
    def done() -> bytes:
        """The Responses stream has no `[DONE]`: its last event says it ended."""
        return b""
