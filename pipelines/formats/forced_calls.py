"""Forced tool calls for chat-template models whose template knows no tools.

SmolLM2's and Gemma's templates have no tool syntax, so `tool_choice: auto` cannot be
served honestly: nothing would tell a call from an answer. A *forced* call can be: when
`tool_choice` names a function, or is `required`, the answer must be a call, so the
output is held by a grammar to `{"name": <one of the tools>, "arguments": <its schema>}`
and read back as that call. The tools are described to the model in a system message,
since its template cannot carry them. This is what instructor's TOOLS mode and
LangChain's `tool_choice="any"` send.
"""

from __future__ import annotations

import codecs
from typing import Any

import msgspec

from pipelines.types import (
    Close,
    GenerationRequest,
    Message,
    MessageEvent,
    Open,
    Piece,
    ResponseFormat,
    StopReason,
    Text,
    Tool,
)

__all__ = ["ForcedCallDecoder", "call_format", "forced_tools", "with_tools_note"]

_ANY_OBJECT: dict[str, Any] = {"type": "object"}


def forced_tools(req: GenerationRequest) -> tuple[Tool, ...]:
    """The tools one of which the answer must call (none when the call is not forced)."""
    forced = req.forced_tool
    if forced is not None:
        return tuple(t for t in req.tools if t.name == forced)
    if req.tool_choice == "required":
        return req.tools
    return ()


def call_format(tools: tuple[Tool, ...]) -> ResponseFormat:
    """The JSON schema of a call to one of `tools`: `{"name", "arguments"}`."""
    alternatives = [
        {
            "type": "object",
            "properties": {"name": {"const": tool.name}, "arguments": tool.parameters or _ANY_OBJECT},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for tool in tools
    ]
    schema = alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives}
    return ResponseFormat(type="json_schema", schema=schema, name="tool_call", strict=True)


def with_tools_note(messages: tuple[Message, ...], tools: tuple[Tool, ...]) -> tuple[Message, ...]:
    """`messages` with the tools described in the system message (added first, or
    appended to the one there is)."""
    lines = ["You must answer by calling one of these functions:"]
    for tool in tools:
        parameters = msgspec.json.encode(tool.parameters or _ANY_OBJECT).decode()
        lines.append(f"- {tool.name}: {tool.description or '(no description)'} Parameters: {parameters}")
    lines.append('Reply with a JSON object {"name": <function name>, "arguments": <its arguments>}.')
    note = "\n".join(lines)
    if messages and messages[0].role in ("system", "developer"):
        first = messages[0]
        merged = msgspec.structs.replace(first, role="system", content=f"{first.content}\n\n{note}".strip())
        return (merged, *messages[1:])
    return (Message(role="system", content=note), *messages)


class ForcedCallDecoder:
    """The model's text is a call in JSON: held back until the output ends, then given as
    a call (`functions.NAME` with its arguments) -- or, when it is not a whole call (cut
    off by `max_tokens`), as the text it is, so nothing is lost."""

    __slots__ = ("_text", "_utf8", "reasoning_tokens")

    stop: StopReason | None = None

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._text: list[str] = []
        self.reasoning_tokens = 0

    def feed(self, piece: Piece) -> list[MessageEvent]:
        if not piece.special:
            self._text.append(self._utf8.decode(piece.data))
        return []

    def finish(self) -> list[MessageEvent]:
        text = "".join(self._text) + self._utf8.decode(b"", final=True)
        call = _call_of(text)
        if call is None:
            return [Open(channel="final"), Text(text), Close()] if text else []
        name, arguments = call
        return [Open(channel="commentary", recipient=f"functions.{name}"), Text(arguments), Close()]


def _call_of(text: str) -> tuple[str, str] | None:
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str) or "arguments" not in value:
        return None
    return value["name"], msgspec.json.encode(value["arguments"]).decode()
