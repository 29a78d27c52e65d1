"""A streaming Harmony parser: pieces in, message events out.

An explicit state machine fed one `Piece` at a time::

    EXPECT_START --<|start|>--> HEADER --<|message|>--> CONTENT --<|end|>--> EXPECT_START
                                                        CONTENT --<|call|>--> EXPECT_START (Done "call")
                                                        CONTENT --<|return|>--> DONE (Done "return")

The prompt ends with `<|start|>assistant`, so by default the parser starts in HEADER with
the role known. Content bytes go through an incremental UTF-8 decoder, so a `TextDelta`
never holds half a character; a sequence that is still open when its message ends becomes
U+FFFD (as openai-harmony does), one cut off by `finish()` is dropped.

The header is parsed like openai-harmony's: the channel is the word after `<|channel|>`; of
the remaining words the last is either `to=RECIPIENT` or a content type (`json`,
`<|constrain|>json`) preceded by an optional recipient, so both
`<|channel|>commentary to=functions.f <|constrain|>json` and
`assistant to=functions.f<|channel|>commentary json` address `functions.f`.

Strict mode raises `HarmonyParseError` on any protocol violation, including control
tokens inside content (openai-harmony would keep those as text). Permissive mode (the
default) keeps going and loses as little text as it can:

- Missing `<|message|>`. A valid header never holds a newline and is short, so when the
  header text gets a newline (or passes 256 bytes) the header is taken to have ended
  there; likewise when the message ends (`<|end|>`, `<|return|>`, `<|call|>`,
  `<|start|>`) while still in the header. Such a header is salvaged: the channel is the
  word after `<|channel|>`; leading `to=X` and `<|constrain|>X` words right after it are
  still read as header; everything else after the channel name is content. Without a
  `<|channel|>` the whole text (minus a leading role word after `<|start|>`) is content
  on no channel. So `<|channel|>final Hello<|end|>` is a final message "Hello", and
  `<|channel|>final\\nHello` streams "Hello" as final content from the newline on.
- Stray special tokens. `<|start|>` or `<|channel|>` inside content end the open message
  and begin a new one (a model that forgot `<|end|><|start|>assistant`); `<|channel|>`,
  `<|constrain|>`, `<|message|>` or text where a message should start begin an
  assistant message without `<|start|>`; `<|return|>` there ends the output. Other
  special tokens where they do not belong are dropped, and everything after `<|return|>`
  is ignored.
"""

from __future__ import annotations

import codecs
import enum
import re
from typing import Final, Literal, TypeAlias

import msgspec

from pipelines.harmony import tokens as tk
from pipelines.types import Piece

__all__ = [
    "Done",
    "DoneReason",
    "EndReason",
    "HarmonyParseError",
    "HarmonyParser",
    "MessageEnd",
    "MessageStart",
    "ParserEvent",
    "ParserState",
    "TextDelta",
]

EndReason = Literal["end", "return", "call", "incomplete"]
DoneReason = Literal["return", "call", "end_of_input"]

_MAX_HEADER_BYTES: Final = 256
_ROLES: Final = frozenset({"system", "developer", "user", "assistant", "tool"})
_CHANNEL_NAME: Final = re.compile(r"[^\s<]*")
_ASCII_SPACE: Final = re.compile(r"[\t\n\x0c\r ]+")
_RECIPIENT_WORD: Final = re.compile(r"\s*to=([^\s<]+)")
_CONSTRAIN_WORD: Final = re.compile(r"\s*" + re.escape(tk.CONSTRAIN) + r"([\w.\-/]*)")


class HarmonyParseError(ValueError):
    """The output broke the Harmony protocol (strict mode only)."""


class ParserState(enum.Enum):
    EXPECT_START = "expect_start"
    HEADER = "header"
    CONTENT = "content"
    DONE = "done"


class MessageStart(msgspec.Struct, frozen=True):
    """A message's header was read; its content follows as `TextDelta`s.

    `role` is the author: a role name, or a tool's name (`functions.f`) for tool output.
    """

    role: str
    channel: str | None = None
    recipient: str | None = None
    content_type: str | None = None


class TextDelta(msgspec.Struct, frozen=True):
    """Content of the open message: whole characters only."""

    text: str


class MessageEnd(msgspec.Struct, frozen=True):
    """The open message ended: `end`, `return`, `call`, or `incomplete` (input ran out)."""

    reason: EndReason = "end"


class Done(msgspec.Struct, frozen=True):
    """The model ended its turn (`return`, `call`) or the input ran out (`end_of_input`).

    After `call` a model that was not stopped may still go on with another message, which
    is parsed normally and ends with its own `Done`.
    """

    reason: DoneReason


ParserEvent: TypeAlias = MessageStart | TextDelta | MessageEnd | Done


def _utf8_decoder() -> codecs.IncrementalDecoder:
    return codecs.getincrementaldecoder("utf-8")(errors="replace")


class HarmonyParser:
    """Streaming parser of one completion; `feed` every piece, then call `finish` once."""

    def __init__(self, *, role: str | None = "assistant", strict: bool = False) -> None:
        """`role`: the role the prompt already opened (`None`: expect `<|start|>` first)."""
        self.strict = strict
        self._default_role = role or "assistant"
        self._state = ParserState.HEADER if role is not None else ParserState.EXPECT_START
        self._header_role = role
        self._header = bytearray()
        self._current: MessageStart | None = None
        self._decoder = _utf8_decoder()
        self._done_reason: DoneReason | None = None

    @property
    def state(self) -> ParserState:
        return self._state

    @property
    def current(self) -> MessageStart | None:
        """The header of the message whose content is being read."""
        return self._current

    @property
    def role(self) -> str | None:
        return self._current.role if self._current is not None else self._header_role

    @property
    def channel(self) -> str | None:
        return self._current.channel if self._current is not None else None

    @property
    def recipient(self) -> str | None:
        return self._current.recipient if self._current is not None else None

    @property
    def content_type(self) -> str | None:
        return self._current.content_type if self._current is not None else None

    @property
    def done(self) -> bool:
        """The model ended its turn (so far: after `<|call|>` it may go on)."""
        return self._done_reason is not None

    @property
    def done_reason(self) -> DoneReason | None:
        return self._done_reason

    def feed(self, piece: Piece) -> list[ParserEvent]:
        out: list[ParserEvent] = []
        if piece.special:
            self._special(piece.data.decode("utf-8", "replace"), out)
        else:
            self._text(piece.data, out)
        return out

    def finish(self) -> list[ParserEvent]:
        """End of input: close what is open (as `incomplete`) and report `Done`."""
        out: list[ParserEvent] = []
        if self._state is ParserState.DONE:
            return out
        if self._state is ParserState.CONTENT:
            # The cut may fall inside a character: its first bytes are dropped, not replaced.
            self._decoder = _utf8_decoder()
            self._close(out, "incomplete")
        elif self._state is ParserState.HEADER and not self.strict:
            header = bytes(self._header)
            text = header[: _complete_utf8_length(header)].decode("utf-8", "replace")
            start, content = _salvage(text, self._header_role)
            if content:
                out += [start, TextDelta(content), MessageEnd("incomplete")]
        if self._done_reason is None:
            self._done_reason = "end_of_input"
            out.append(Done("end_of_input"))
        self._state = ParserState.DONE
        return out

    def _text(self, data: bytes, out: list[ParserEvent]) -> None:
        state = self._state
        if state is ParserState.CONTENT:
            text = self._decoder.decode(data)
            if text:
                out.append(TextDelta(text))
        elif state is ParserState.HEADER:
            self._header += data
            if not self.strict:
                self._salvage_early(out)
        elif state is ParserState.EXPECT_START:
            self._violation(f"text {data!r} where a message should start")
            if data.strip():
                self._begin(self._default_role)
                self._text(data, out)
        else:
            self._violation("text after <|return|>")

    def _special(self, token: str, out: list[ParserEvent]) -> None:
        state = self._state
        if state is ParserState.CONTENT:
            if token in (tk.END, tk.RETURN, tk.CALL):
                self._close(out, _END_REASONS[token])
            elif token == tk.START:
                self._violation("<|start|> inside a message")
                self._close(out, "end")
                self._begin(None)
            elif token == tk.CHANNEL:
                self._violation("<|channel|> inside a message")
                role = self.role
                self._close(out, "end")
                self._begin(role)
                self._header += token.encode()
            else:
                self._violation(f"{token} inside a message")
        elif state is ParserState.HEADER:
            self._special_in_header(token, out)
        elif state is ParserState.EXPECT_START:
            if token == tk.START:
                self._begin(None)
                return
            self._violation(f"{token} where <|start|> was expected")
            if token in (tk.CHANNEL, tk.CONSTRAIN, tk.MESSAGE):
                self._begin(self._default_role)
                self._special_in_header(token, out)
            elif token == tk.RETURN:
                self._state = ParserState.DONE
                self._done_reason = "return"
                out.append(Done("return"))
        else:
            self._violation(f"{token} after <|return|>")

    def _special_in_header(self, token: str, out: list[ParserEvent]) -> None:
        if token == tk.MESSAGE:
            self._open(_parse_header(self._header_text(), self._header_role, strict=self.strict), out)
        elif token in (tk.CHANNEL, tk.CONSTRAIN):
            self._header += token.encode()
        elif token in (tk.END, tk.RETURN, tk.CALL, tk.START):
            self._violation(f"{token} in a message header (no <|message|>)")
            if self._header.strip():
                start, content = _salvage(self._header_text(), self._header_role)
                self._open(start, out)
                if content:
                    out.append(TextDelta(content))
                self._close(out, _END_REASONS.get(token, "end"))
            elif token == tk.RETURN:
                self._state = ParserState.DONE
                self._done_reason = "return"
                out.append(Done("return"))
            else:
                self._state = ParserState.EXPECT_START
                self._header.clear()
            if token == tk.START:
                self._begin(None)
        else:
            self._violation(f"{token} in a message header")

    def _salvage_early(self, out: list[ParserEvent]) -> None:
        header = bytes(self._header).lstrip()
        newline = header.find(b"\n")
        if newline < 0 and len(header) <= _MAX_HEADER_BYTES:
            return
        if newline >= 0:
            head, tail = header[:newline], header[newline + 1 :]
            # The newline separated the header from the text; it is part of the text only
            # when some text came before it.
            separator = b"\n"
        else:
            cut = _complete_utf8_length(header)
            head, tail, separator = header[:cut], header[cut:], b""
        start, content = _salvage(head.decode("utf-8", "replace"), self._header_role)
        self._open(start, out)
        self._text(content.encode() + separator + tail if content else tail, out)

    def _begin(self, role: str | None) -> None:
        self._state = ParserState.HEADER
        self._header_role = role
        self._header.clear()
        self._current = None
        self._done_reason = None

    def _open(self, start: MessageStart, out: list[ParserEvent]) -> None:
        self._state = ParserState.CONTENT
        self._current = start
        self._header.clear()
        out.append(start)

    def _close(self, out: list[ParserEvent], reason: EndReason) -> None:
        rest = self._decoder.decode(b"", final=True)
        self._decoder = _utf8_decoder()
        if rest:
            out.append(TextDelta(rest))
        out.append(MessageEnd(reason))
        self._current = None
        self._header_role = None
        if reason == "return":
            self._state = ParserState.DONE
            self._done_reason = "return"
            out.append(Done("return"))
        else:
            self._state = ParserState.EXPECT_START
            if reason == "call":
                self._done_reason = "call"
                out.append(Done("call"))

    def _header_text(self) -> str:
        return bytes(self._header).decode("utf-8", "replace")

    def _violation(self, what: str) -> None:
        if self.strict:
            raise HarmonyParseError(what)


_END_REASONS: Final[dict[str, EndReason]] = {tk.END: "end", tk.RETURN: "return", tk.CALL: "call"}


def _complete_utf8_length(data: bytes) -> int:
    """Length of `data` without a trailing, still incomplete UTF-8 sequence."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return len(data)
        if byte >= 0xC0:
            needed = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) - back if needed > back else len(data)
    return len(data)


def _parse_header(text: str, role: str | None, *, strict: bool) -> MessageStart:
    """openai-harmony's header grammar (see the module docstring)."""
    channel: str | None = None
    at = text.find(tk.CHANNEL)
    if at >= 0:
        after = text[at + len(tk.CHANNEL) :]
        name = _CHANNEL_NAME.match(after)
        assert name is not None
        if not name.group() and strict:
            raise HarmonyParseError("<|channel|> without a channel name")
        channel = name.group() or None
        text = text[:at] + after[name.end() :]
    text = text.strip()
    if tk.CONSTRAIN in text:
        text = text.replace(tk.CONSTRAIN, " " + tk.CONSTRAIN).strip()
    parts = [p for p in _ASCII_SPACE.split(text) if p]

    if role is None:
        if not parts:
            if strict:
                raise HarmonyParseError("message header has no role")
            role = "assistant"
        elif parts[0] in _ROLES:
            role = parts[0]
        else:
            # An unknown author followed by more header words is a tool speaking.
            if strict and len(parts) == 1 and not parts[0].startswith("to="):
                raise HarmonyParseError(f"unknown role {parts[0]!r}")
            role = parts.pop(0)
    if parts and parts[0] == role:
        parts.pop(0)

    recipient: str | None = None
    content_type: str | None = None
    if parts:
        count = len(parts)
        last = parts.pop()
        if last.startswith("to="):
            recipient = last[3:]
        elif count == 1 and not last.startswith(tk.CONSTRAIN):
            recipient = last
        else:
            content_type = last
            if parts:
                raw = parts.pop()
                recipient = raw.removeprefix("to=")
    if parts and strict:
        raise HarmonyParseError(f"unexpected words in message header: {' '.join(parts)!r}")
    return MessageStart(role, channel, recipient, content_type)


def _salvage(text: str, role: str | None) -> tuple[MessageStart, str]:
    """Best reading of a header that never got its `<|message|>`: (header, content)."""
    at = text.find(tk.CHANNEL)
    channel: str | None = None
    if at >= 0:
        before, after = text[:at], text[at + len(tk.CHANNEL) :]
        name = _CHANNEL_NAME.match(after)
        assert name is not None
        channel, rest = name.group() or None, after[name.end() :]
    else:
        before, rest = text, ""
    if role is None:
        words = before.split(maxsplit=1)
        if words and not words[0].startswith(("to=", "<|")):
            role, before = words[0], (words[1] if len(words) > 1 else "")
        else:
            role = "assistant"
    recipient, content_type, before = _header_words(before)
    if at >= 0:
        recipient_after, content_type_after, content = _header_words(rest)
        recipient = recipient_after or recipient
        content_type = content_type_after or content_type
    else:
        content = before
    return MessageStart(role, channel, recipient, content_type), content


def _header_words(text: str) -> tuple[str | None, str | None, str]:
    """Leading `to=X` / `<|constrain|>X` words of `text`, and what follows them."""
    recipient: str | None = None
    content_type: str | None = None
    while True:
        if (m := _RECIPIENT_WORD.match(text)) is not None:
            recipient = m.group(1)
        elif (m := _CONSTRAIN_WORD.match(text)) is not None:
            content_type = tk.CONSTRAIN + m.group(1)
        else:
            return recipient, content_type, text.lstrip()
        text = text[m.end() :]
