"""Harmony channels -> the deltas OpenAI clients expect.

`analysis` is reasoning; `final`, a preamble (`commentary` to no one) and text on no
channel are content; any message with a recipient (`to=functions.X`, `to=browser.search`)
is a tool call named by the recipient minus a `functions.` prefix. A channel the model
invented is treated as reasoning: never shown as the answer, never lost.

Reasoning tokens are counted the way vLLM counts them for gpt-oss: the tokens of every
piece after which the parser is inside an analysis message (its `<|message|>` and its
content, not its header or its closing token).
"""

from __future__ import annotations

import codecs
import secrets
import string
from collections.abc import Callable
from typing import Final, Literal

import msgspec

from pipelines.harmony.parser import DoneReason, HarmonyParser, MessageEnd, MessageStart, ParserEvent, TextDelta
from pipelines.types import Delta, DeltaKind, LogprobEntry, Piece

__all__ = ["HarmonyDeltaMapper", "ToolCallRecord", "new_tool_call_id"]

_ID_ALPHABET: Final = string.ascii_letters + string.digits
_CONTENT_CHANNELS: Final = frozenset({"final", "commentary", None})
# Addressed to these, a message is not a call.
_NOT_TOOLS: Final = frozenset({"all", "user", "assistant"})
_PIECE_CHANNEL_KINDS: Final = {"reasoning": DeltaKind.REASONING, "content": DeltaKind.CONTENT}


def new_tool_call_id() -> str:
    """`call_` and 24 random letters and digits."""
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


class ToolCallRecord(msgspec.Struct, frozen=True):
    """One tool call of the response, complete (or cut off, then usually not valid JSON)."""

    id: str
    name: str
    arguments: str
    arguments_valid_json: bool


class _OpenCall:
    __slots__ = ("arguments", "id", "index", "name")

    def __init__(self, index: int, id_: str, name: str) -> None:
        self.index = index
        self.id = id_
        self.name = name
        self.arguments: list[str] = []


class HarmonyDeltaMapper:
    """Owns a `HarmonyParser`; feed it the pieces of one generation, then `finish` it.

    Pieces a provider already labelled with a `channel` (an upstream that split the
    reasoning out) skip the parser and keep their label.
    """

    def __init__(
        self,
        *,
        strict: bool = False,
        role: str | None = "assistant",
        new_id: Callable[[], str] = new_tool_call_id,
    ) -> None:
        self.parser = HarmonyParser(role=role, strict=strict)
        self._new_id = new_id
        self._kind: DeltaKind | None = None
        self._call: _OpenCall | None = None
        self._calls: list[ToolCallRecord] = []
        self._call_count = 0
        self._logprobs: list[LogprobEntry] = []
        self._labelled_decoders: dict[DeltaKind, codecs.IncrementalDecoder] = {}
        self._labelled_logprobs: list[LogprobEntry] = []
        self.reasoning_tokens = 0
        """Tokens that were reasoning (see the module docstring)."""

    @property
    def tool_calls(self) -> list[ToolCallRecord]:
        """The tool calls finished so far (all of them once `finish` ran)."""
        return list(self._calls)

    @property
    def finish_kind(self) -> Literal["stop", "tool_calls"]:
        return "tool_calls" if self._call_count else "stop"

    @property
    def done_reason(self) -> DoneReason | None:
        """How the output ended: `return`, `call`, `end_of_input` (None: not yet)."""
        return self.parser.done_reason

    def feed(self, piece: Piece) -> list[Delta]:
        if piece.channel is not None:
            return self._labelled_piece(piece)
        if piece.logprob is not None:
            self._logprobs.append(piece.logprob)
        deltas = self._map(self.parser.feed(piece))
        if self.parser.channel == "analysis":
            self.reasoning_tokens += piece.tokens
        return deltas

    def finish(self) -> list[Delta]:
        # A labelled stream cut inside a character loses that character's first bytes,
        # like the parser's own content does.
        self._labelled_decoders.clear()
        return self._map(self.parser.finish())

    def _map(self, events: list[ParserEvent]) -> list[Delta]:
        deltas: list[Delta] = []
        for event in events:
            if isinstance(event, TextDelta):
                delta = self._text(event.text)
                if delta is not None:
                    deltas.append(delta)
            elif isinstance(event, MessageStart):
                deltas += self._start(event)
            elif isinstance(event, MessageEnd):
                self._end()
        return deltas

    def _start(self, event: MessageStart) -> list[Delta]:
        self._logprobs.clear()
        recipient = event.recipient
        if recipient is not None and recipient not in _NOT_TOOLS:
            call = _OpenCall(self._call_count, self._new_id(), recipient.removeprefix("functions."))
            self._call_count += 1
            self._call = call
            self._kind = DeltaKind.TOOL_CALL
            return [Delta(DeltaKind.TOOL_CALL, tool_index=call.index, tool_id=call.id, tool_name=call.name)]
        self._kind = DeltaKind.CONTENT if event.channel in _CONTENT_CHANNELS else DeltaKind.REASONING
        return []

    def _text(self, text: str) -> Delta | None:
        kind = self._kind
        if kind is None or not text:
            return None
        if kind is DeltaKind.TOOL_CALL:
            assert self._call is not None
            self._call.arguments.append(text)
            return Delta(kind, text, tool_index=self._call.index)
        # OpenAI reports logprobs for the answer only.
        logprobs = tuple(self._logprobs) if kind is DeltaKind.CONTENT else ()
        self._logprobs.clear()
        return Delta(kind, text, logprobs=logprobs)

    def _end(self) -> None:
        call = self._call
        if call is not None:
            arguments = "".join(call.arguments)
            self._calls.append(ToolCallRecord(call.id, call.name, arguments, _is_json(arguments)))
        self._call = None
        self._kind = None
        self._logprobs.clear()

    def _labelled_piece(self, piece: Piece) -> list[Delta]:
        kind = _PIECE_CHANNEL_KINDS[piece.channel or "content"]
        if kind is DeltaKind.REASONING:
            self.reasoning_tokens += piece.tokens
        decoder = self._labelled_decoders.get(kind)
        if decoder is None:
            decoder = self._labelled_decoders[kind] = codecs.getincrementaldecoder("utf-8")(errors="replace")
        if piece.logprob is not None and kind is DeltaKind.CONTENT:
            self._labelled_logprobs.append(piece.logprob)
        text = decoder.decode(piece.data)
        if not text:
            return []
        logprobs = tuple(self._labelled_logprobs) if kind is DeltaKind.CONTENT else ()
        if logprobs:
            self._labelled_logprobs.clear()
        return [Delta(kind, text, logprobs=logprobs)]


def _is_json(text: str) -> bool:
    try:
        msgspec.json.decode(text)
    except msgspec.DecodeError:
        return False
    return True
