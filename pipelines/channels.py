"""Messages -> the deltas OpenAI clients expect: the one place channels get their meaning.

Every model's output reaches here as messages (`Open`, `Text`, `Close`): Harmony's parser
makes them from tokens, a chat-template model's text is one `final` message, an upstream's
stream arrives already split. The mapping:

- `analysis` is reasoning; `final`, a preamble (`commentary` to no one) and text on no
  channel are content; a channel the model invented is reasoning too: never shown as the
  answer, never lost.
- A message with a recipient (`to=functions.X`, `to=browser.search`) is a tool call named
  by the recipient minus a `functions.` prefix, except one addressed to `all`, `user` or
  `assistant`, which is not a call. Its first delta carries the call's id and name, the
  rest its argument text.
- OpenAI reports logprobs for the answer only: content deltas keep theirs.
- A call's arguments are JSON text, `{}` at least (`finish`).
- With `max_calls` (a request's `parallel_tool_calls: false` makes it 1), a call beyond it
  is not opened: `over` says the turn is over, and the pipeline stops there.

Tool calls are collected here, once, for the result.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from typing import Final

import msgspec

from pipelines.types import Close, Delta, DeltaKind, MessageEvent, Open, Text, ToolCall

__all__ = ["ChannelMapper", "new_tool_call_id"]

_ID_ALPHABET: Final = string.ascii_letters + string.digits
_CONTENT_CHANNELS: Final = frozenset({"final", "commentary", None})
_NOT_TOOLS: Final = frozenset({"all", "user", "assistant"})
"""Addressed to these, a message is not a call."""


def new_tool_call_id() -> str:
    """`call_` and 24 random letters and digits."""
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


class _Call:
    __slots__ = ("arguments", "id", "index", "name")

    def __init__(self, index: int, id_: str, name: str) -> None:
        self.index = index
        self.id = id_
        self.name = name
        self.arguments: list[str] = []


class ChannelMapper:
    """Feed it one generation's messages; it answers each with the delta for the client
    (or None) and keeps the tool calls."""

    __slots__ = ("_call", "_calls", "_kind", "_max_calls", "_new_id", "over", "reasoning_tokens")

    def __init__(self, *, new_id: Callable[[], str] = new_tool_call_id, max_calls: int | None = None) -> None:
        self._new_id = new_id
        self._max_calls = max_calls
        self.over = False
        """A call beyond `max_calls` began: nothing after it belongs to this turn."""
        self._kind: DeltaKind | None = None
        """What the open message is (None: no message is open; its text is dropped)."""
        self._call: _Call | None = None
        self._calls: dict[str, _Call] = {}
        self.reasoning_tokens = 0
        """Tokens of reasoning text whose tokens no piece counted (a backend's)."""

    def feed(self, event: MessageEvent) -> Delta | None:
        if isinstance(event, Text):
            return self._text(event)
        if isinstance(event, Open):
            return self._open(event)
        assert isinstance(event, Close)
        self._kind = None
        self._call = None
        return None

    def _open(self, event: Open) -> Delta | None:
        recipient = event.recipient
        if recipient is None or recipient in _NOT_TOOLS:
            self._call = None
            self._kind = DeltaKind.CONTENT if event.channel in _CONTENT_CHANNELS else DeltaKind.REASONING
            return None
        self._kind = DeltaKind.TOOL_CALL
        known = self._calls.get(event.call_id) if event.call_id is not None else None
        if known is not None:
            self._call = known  # the backend went back to a call it had opened
            return None
        if self._max_calls is not None and len(self._calls) >= self._max_calls:
            self.over = True
            self._kind = self._call = None
            return None
        call = self._call = _Call(
            len(self._calls), event.call_id or self._new_id(), recipient.removeprefix("functions.")
        )
        self._calls[event.call_id or f"#{call.index}"] = call
        return Delta(DeltaKind.TOOL_CALL, tool_index=call.index, tool_id=call.id, tool_name=call.name)

    def _text(self, event: Text) -> Delta | None:
        kind = self._kind
        if kind is None:
            return None
        if kind is DeltaKind.TOOL_CALL:
            assert self._call is not None
            if not event.text:
                return None
            self._call.arguments.append(event.text)
            return Delta(kind, event.text, tool_index=self._call.index)
        if kind is DeltaKind.REASONING:
            self.reasoning_tokens += event.tokens
            return Delta(kind, event.text) if event.text else None
        if not event.text and not event.logprobs:
            return None
        return Delta(kind, event.text, logprobs=event.logprobs)

    def finish(self) -> list[Delta]:
        """Once the output is over: a call that got no argument text gets `{}`, so that a
        call's arguments are always JSON text (a model may close a call at once, an
        upstream may send none). Arguments cut short stay as they are (`invalid_calls`)."""
        out: list[Delta] = []
        for call in self._calls.values():
            if not call.arguments:
                call.arguments.append("{}")
                out.append(Delta(DeltaKind.TOOL_CALL, "{}", tool_index=call.index))
        return out

    @property
    def tool_calls(self) -> list[ToolCall]:
        """The calls so far, in the order they opened (arguments as produced)."""
        return [ToolCall(id=c.id, name=c.name, arguments="".join(c.arguments)) for c in self._calls.values()]

    @property
    def has_calls(self) -> bool:
        return bool(self._calls)

    def invalid_calls(self) -> list[str]:
        """Names of the calls whose arguments are not JSON (cut off, or a model's slip)."""
        return [c.name for c in self.tool_calls if not is_json(c.arguments)]


def is_json(text: str) -> bool:
    try:
        msgspec.json.decode(text)
    except msgspec.DecodeError:
        return False
    return True
