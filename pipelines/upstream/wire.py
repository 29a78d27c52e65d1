"""The OpenAI chat wire as an upstream client speaks it: the request body we send, and
the event stream we read back, turned into pieces.

This is not `compat/` (our server-side wire): it is a provider's backend protocol, kept
to the fields an upstream streams. Unknown fields are ignored; the parts are pure
functions and classes, so every odd stream can be tested without HTTP.
"""

from __future__ import annotations

from typing import Any

import msgspec

from pipelines.providers.base import DecodeParams, Prompt
from pipelines.types import (
    LogprobEntry,
    Message,
    MessageEvent,
    Open,
    Report,
    ResponseFormat,
    StopReason,
    Text,
    TopLogprob,
    Usage,
)
from pipelines.upstream.errors import UpstreamFailure

__all__ = ["ChunkReader", "SSEDecoder", "StreamUsage", "chat_body", "logprob_entry", "sampling_body"]


# -- the request ------------------------------------------------------------------


def _message(m: Message) -> dict[str, Any]:
    # Reasoning of earlier turns is not sent back: OpenAI's request has no field for it,
    # and chat templates drop it anyway.
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.name is not None:
        out["name"] = m.name
    if m.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]
        if not m.content:
            out["content"] = None
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    return out


def _response_format(rf: ResponseFormat) -> dict[str, Any] | None:
    if rf.type == "json_object":
        return {"type": "json_object"}
    if rf.type == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": rf.name or "response", "schema": rf.schema or {}, "strict": rf.strict},
        }
    return None


def chat_body(model: str, prompt: Prompt, params: DecodeParams) -> dict[str, Any]:
    """The upstream request for one generation.

        Always streamed with usage (so that pieces relay as they come and the upstream's own
        counts win). Sampling is the merged snapshot (`params`), so the upstream decodes with
        what our events report; extensions (`top_k`, `min_p`, `repeat_penalty` — also as vLLM's
    `repetition_penalty`) are sent only
        when they differ from neutral. Tools, tool choice, stop and the reasoning effort come
        from the request the pipeline attached to the prompt."""
    body = sampling_body(model, params, prompt.request.stop if prompt.request is not None else ())
    body["messages"] = [_message(m) for m in prompt.messages]
    if params.logprobs:
        body["logprobs"] = True
        if params.top_logprobs:
            body["top_logprobs"] = params.top_logprobs
    rf = _response_format(params.response_format)
    if rf is not None:
        body["response_format"] = rf
    req = prompt.request
    if req is None:
        return body
    if req.sampling.reasoning_effort is not None:
        body["reasoning_effort"] = req.sampling.reasoning_effort
    if req.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    k: v
                    for k, v in (
                        ("name", t.name),
                        ("description", t.description),
                        ("parameters", t.parameters),
                        ("strict", t.strict),
                    )
                    if v is not None
                },
            }
            for t in req.tools
        ]
        forced = req.forced_tool
        body["tool_choice"] = {"type": "function", "function": {"name": forced}} if forced else req.tool_choice
        body["parallel_tool_calls"] = req.parallel_tool_calls
    return body


def sampling_body(model: str, params: DecodeParams, stop: tuple[str, ...] = ()) -> dict[str, Any]:
    """What the chat and completion bodies share: the model, streaming with usage, the
    output cap, sampling and stop sequences."""
    body: dict[str, Any] = {
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
    }
    if params.top_k:
        body["top_k"] = params.top_k
    if params.min_p:
        body["min_p"] = params.min_p
    if params.repeat_penalty != 1.0:
        # llama.cpp's server reads the first name, vLLM the second; each ignores the other's
        body["repeat_penalty"] = body["repetition_penalty"] = params.repeat_penalty
    if params.presence_penalty:
        body["presence_penalty"] = params.presence_penalty
    if params.frequency_penalty:
        body["frequency_penalty"] = params.frequency_penalty
    if params.seed is not None:
        body["seed"] = params.seed
    if stop:
        body["stop"] = list(stop)
    return body


# -- the event stream -------------------------------------------------------------


class SSEDecoder:
    """Bytes of a `text/event-stream` in, the data of each complete event out.

    Only `data:` fields matter here; comments (`: keep-alive`), `event:`, `id:` and
    `retry:` are skipped. Several `data:` lines of one event are joined by newlines.
    Works on the bytes as they arrive (no text decoding, no line objects): an upstream
    sends one `data:` line per event, so each event is cut out whole at its blank line and
    taken in one slice; only other shapes go line by line. CR and CRLF line ends are
    turned into LF first (a CR that ends a read may be half of a CRLF: it waits)."""

    __slots__ = ("_rest",)

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, data: bytes) -> list[bytes]:
        """The data of every event that `data` completes (an event without a `data:` field
        gives none)."""
        # one whole one-line event in one read, LF-terminated: the common case
        single = data.startswith(b"data: ") and data.find(b"\n") == len(data) - 2 and data.endswith(b"\n")
        if single and not self._rest and b"\r" not in data:
            return [data[6:-2]]
        buf = self._rest + data if self._rest else data
        if b"\r" in buf:
            held = buf.endswith(b"\r")
            buf = (buf[:-1] if held else buf).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if held:
                buf += b"\r"  # stays in `_rest`: no event ends in a lone CR
        events = buf.split(b"\n\n")
        self._rest = events.pop()
        out: list[bytes] = []
        for event in events:
            if event.startswith(b"data: ") and b"\n" not in event:
                out.append(event[6:])
            else:
                payload = _event_data(event)
                if payload is not None:
                    out.append(payload)
        return out

    def flush(self) -> bytes | None:
        """The data of a last event the stream ended without its blank line."""
        rest, self._rest = self._rest, b""
        return _event_data(rest.rstrip(b"\r\n"))


def _event_data(event: bytes) -> bytes | None:
    """The joined `data:` fields of one event's lines (None: it has none)."""
    data: list[bytes] = []
    for line in event.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        name, _, value = line.partition(b":")
        if name == b"data":
            data.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(data) if data else None


# What is read of each stream event, and nothing more (msgspec skips the rest unparsed).
# `gc=False`: decoded trees hold no cycles, so the collector need not track one per event.


class _FunctionDelta(msgspec.Struct, gc=False):
    name: str | None = None
    arguments: str | None = None


class _ToolCallDelta(msgspec.Struct, gc=False):
    index: int = 0
    id: str | None = None
    function: _FunctionDelta | None = None


class _TopLogprob(msgspec.Struct, gc=False):
    token: str
    logprob: float
    bytes: list[int] | None = None


class _Logprob(msgspec.Struct, gc=False):
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[_TopLogprob] | None = None


class _ChoiceLogprobs(msgspec.Struct, gc=False):
    content: list[_Logprob] | None = None


class _Delta(msgspec.Struct, gc=False):
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    tool_calls: list[_ToolCallDelta] | None = None


class _Choice(msgspec.Struct, gc=False):
    index: int = 0
    delta: _Delta | None = None
    finish_reason: str | None = None
    logprobs: _ChoiceLogprobs | None = None


class _Details(msgspec.Struct, gc=False):
    reasoning_tokens: int | None = None


class _PromptDetails(msgspec.Struct, gc=False):
    cached_tokens: int | None = None


class StreamUsage(msgspec.Struct, gc=False):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    completion_tokens_details: _Details | None = None
    prompt_tokens_details: _PromptDetails | None = None


class _Chunk(msgspec.Struct, gc=False):
    choices: list[_Choice] | None = None
    usage: StreamUsage | None = None
    error: Any = None
    """An in-band error event (`data: {"error": …}`), as this gateway itself sends mid-stream."""


_CHUNK = msgspec.json.Decoder(_Chunk)
_OPEN_ANALYSIS = Open(channel="analysis")
_OPEN_FINAL = Open(channel="final")

_STOPS = {
    "stop": StopReason.EOS,
    "length": StopReason.LENGTH,
    "tool_calls": StopReason.TOOL_CALL,
    "function_call": StopReason.TOOL_CALL,
}
"""An upstream's finish_reason -> ours; anything else (`content_filter`, vendor values) ends as `eos`."""


def _logprob(lp: _Logprob) -> LogprobEntry:
    return logprob_entry(lp.token, lp.logprob, lp.bytes, [(t.token, t.logprob, t.bytes) for t in lp.top_logprobs or ()])


def logprob_entry(
    token: str, logprob: float, data: list[int] | None, top: list[tuple[str, float, list[int] | None]]
) -> LogprobEntry:
    """A token's logprob as an upstream sent it (bytes from the text where it sent none)."""
    return LogprobEntry(
        token=token,
        logprob=logprob,
        bytes=data if data is not None else list(token.encode()),
        top_logprobs=[
            TopLogprob(token=t, logprob=lp, bytes=b if b is not None else list(t.encode())) for t, lp, b in top
        ],
    )


class ChunkReader:
    """Turns the data of each stream event into messages, holding back the end.

    An upstream's stream is already split: `reasoning_content` (or `reasoning`) is the
    `analysis` channel, `content` the `final` one, each tool call a message addressed to
    its function (`call_id` keeps interleaved calls apart). A message opens whenever the
    stream moves to another one. The finish reason arrives before the usage chunk
    (`stream_options.include_usage`), and the pipeline stops reading at the report that
    carries a stop: so both are kept until the stream is over and go out in one `Report`.
    Each piece of text counts as one token (content: one per logprob entry, when sent);
    the upstream's usage, when it sends one, replaces those counts."""

    decoder: msgspec.json.Decoder[Any] = _CHUNK
    """Decodes one event's data: an object with `choices`, `usage` and `error`."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.stop: StopReason | None = None
        self.usage: Usage | None = None
        self.done = False
        """`[DONE]` was read."""
        self._open: str | None = None
        """Which message is open: `analysis`, `final`, or a call's id."""
        self._call_ids: dict[int, str] = {}

    def pieces(self, data: bytes) -> list[MessageEvent]:
        """The messages of one event's data (`[DONE]`: none, and `done` is set)."""
        if not data.startswith(b"{") and data.strip() == b"[DONE]":
            self.done = True
            return []
        try:
            chunk = self.decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise UpstreamFailure(
                f"{self.where} sent a malformed stream event ({exc}): {data[:200].decode(errors='replace')!r}",
                reason="bad_response",
                retryable=True,
            ) from None
        if chunk.error is not None:
            err = chunk.error
            message = err.get("message") if isinstance(err, dict) else str(err)
            raise UpstreamFailure(
                f"{self.where} reported an error mid-stream: {message}", reason="server_error", retryable=True
            )
        if chunk.usage is not None:
            u = chunk.usage
            details = u.completion_tokens_details
            cached = u.prompt_tokens_details
            self.usage = Usage(
                prompt_tokens=u.prompt_tokens or 0,
                completion_tokens=u.completion_tokens or 0,
                reasoning_tokens=(details.reasoning_tokens or 0) if details is not None else 0,
                cached_tokens=(cached.cached_tokens or 0) if cached is not None else 0,
            )
        out: list[MessageEvent] = []
        for choice in chunk.choices or ():
            if choice.index == 0:  # we always ask for one choice
                self.choice(choice, out)
                self.finish(choice.finish_reason)
        return out

    def choice(self, choice: Any, out: list[MessageEvent]) -> None:
        """Adds the messages of one choice of a chunk (`decoder`'s type) to `out`."""
        if choice.delta is not None:
            self._delta_messages(choice.delta, choice.logprobs, out)

    def finish(self, reason: str | None) -> None:
        """Notes an upstream's finish reason (None: not yet)."""
        if reason:
            self.stop = _STOPS.get(reason, StopReason.EOS)

    def _switch(self, to: str, opening: Open, out: list[MessageEvent]) -> None:
        if self._open != to:
            self._open = to
            out.append(opening)

    def _delta_messages(self, d: _Delta, logprobs: _ChoiceLogprobs | None, out: list[MessageEvent]) -> None:
        reasoning = d.reasoning_content or d.reasoning
        if reasoning:
            self._switch("analysis", _OPEN_ANALYSIS, out)
            out.append(Text(reasoning, tokens=1))
        entries = tuple(_logprob(lp) for lp in logprobs.content or ()) if logprobs is not None else ()
        if d.content or entries:
            self._switch("final", _OPEN_FINAL, out)
            out.append(Text(d.content or "", tokens=len(entries) or 1, logprobs=entries))
        for call in d.tool_calls or ():
            fn = call.function or _FunctionDelta()
            # Some servers repeat a call's id and name on every delta: the first names it.
            call_id = self._call_ids.get(call.index)
            if call_id is None:
                call_id = self._call_ids[call.index] = call.id or f"call_{call.index}"
            opening = Open(channel="commentary", recipient=f"functions.{fn.name or ''}", call_id=call_id)
            self._switch(call_id, opening, out)
            out.append(Text(fn.arguments or "", tokens=1))

    def final(self) -> Report | None:
        """The closing report (usage and stop), once the stream is over."""
        if self.stop is None and self.usage is None:
            return None
        return Report(usage=self.usage, stop=self.stop or StopReason.EOS)

    @property
    def finished(self) -> bool:
        """The upstream said it was done (`[DONE]` or a finish reason)."""
        return self.done or self.stop is not None
