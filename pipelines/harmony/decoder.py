"""Harmony tokens -> messages: the Harmony model's token decoder.

Wraps a `HarmonyParser`: each piece's parser events become `Open`/`Text`/`Close`, which
`pipelines/channels.py` turns into deltas like any other model's messages. Logprobs of the
pieces that made a text ride on that text.

Reasoning tokens are counted the way vLLM counts them for gpt-oss: the tokens of every
piece after which the parser is inside an analysis message (its `<|message|>` and its
content, not its header or its closing token).
"""

from __future__ import annotations

from pipelines.harmony.parser import DoneReason, HarmonyParser, MessageEnd, MessageStart, ParserEvent, TextDelta
from pipelines.types import Close, LogprobEntry, MessageEvent, Open, Piece, StopReason, Text

__all__ = ["HarmonyDecoder"]


class HarmonyDecoder:
    """Feed it the pieces of one generation, then `finish` it."""

    __slots__ = ("_logprobs", "parser", "reasoning_tokens")

    def __init__(self, *, strict: bool = False, role: str | None = "assistant") -> None:
        self.parser = HarmonyParser(role=role, strict=strict)
        self._logprobs: list[LogprobEntry] = []
        self.reasoning_tokens = 0

    @property
    def done_reason(self) -> DoneReason | None:
        """How the output ended: `return`, `call`, `end_of_input` (None: not yet)."""
        return self.parser.done_reason

    @property
    def stop(self) -> StopReason | None:
        """Set once the model ended its answer (`<|return|>`). After `<|call|>` a real model
        stops by itself (an end-of-generation token); a transcript may go on with a second
        call, so the provider decides when it ends."""
        return StopReason.EOS if self.parser.done_reason == "return" else None

    def feed(self, piece: Piece) -> list[MessageEvent]:
        if piece.logprob is not None:
            self._logprobs.append(piece.logprob)
        events = self._messages(self.parser.feed(piece))
        if self.parser.channel == "analysis":
            self.reasoning_tokens += piece.tokens
        return events

    def finish(self) -> list[MessageEvent]:
        return self._messages(self.parser.finish())

    def _messages(self, events: list[ParserEvent]) -> list[MessageEvent]:
        out: list[MessageEvent] = []
        for event in events:
            if isinstance(event, TextDelta):
                if event.text:
                    out.append(Text(event.text, logprobs=tuple(self._logprobs)))
                    self._logprobs.clear()
            elif isinstance(event, MessageStart):
                self._logprobs.clear()
                out.append(Open(channel=event.channel, recipient=event.recipient))
            elif isinstance(event, MessageEnd):
                self._logprobs.clear()
                out.append(Close())
        return out
