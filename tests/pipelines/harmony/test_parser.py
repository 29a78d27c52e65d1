"""The streaming Harmony parser, in both modes, and against openai-harmony's own parser."""

from __future__ import annotations

from typing import Any

import pytest

from pipelines.harmony.parser import (
    Done,
    HarmonyParseError,
    HarmonyParser,
    MessageEnd,
    MessageStart,
    ParserEvent,
    ParserState,
    TextDelta,
)
from pipelines.harmony.split import SpecialTokenSplitter, split_special
from pipelines.types import Piece


def pieces(raw: str | bytes, chunk: int | None = None) -> list[Piece]:
    """Split `raw` into special pieces and text pieces of at most `chunk` bytes."""
    data = raw.encode() if isinstance(raw, str) else raw
    out: list[Piece] = []
    for piece in split_special(data):
        if piece.special or chunk is None:
            out.append(piece)
        else:
            out += [Piece(piece.data[i : i + chunk]) for i in range(0, len(piece.data), chunk)]
    return out


def run(raw: str | bytes, *, chunk: int | None = None, strict: bool = False) -> list[ParserEvent]:
    parser = HarmonyParser(strict=strict)
    events: list[ParserEvent] = []
    for piece in pieces(raw, chunk):
        events += parser.feed(piece)
    return events + parser.finish()


def messages(events: list[ParserEvent]) -> list[tuple[str | None, str | None, str | None, str, str]]:
    """(channel, recipient, content_type, text, end reason) per message, text deltas joined."""
    out: list[tuple[str | None, str | None, str | None, str, str]] = []
    start: MessageStart | None = None
    text: list[str] = []
    for event in events:
        if isinstance(event, MessageStart):
            start, text = event, []
        elif isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, MessageEnd):
            assert start is not None
            out.append((start.channel, start.recipient, start.content_type, "".join(text), event.reason))
            start = None
    return out


def test_reasoning_then_final() -> None:
    raw = (
        "<|channel|>analysis<|message|>User greets. Respond.<|end|>"
        "<|start|>assistant<|channel|>final<|message|>Hello there!<|return|>"
    )
    assert run(raw) == [
        MessageStart("assistant", "analysis"),
        TextDelta("User greets. Respond."),
        MessageEnd("end"),
        MessageStart("assistant", "final"),
        TextDelta("Hello there!"),
        MessageEnd("return"),
        Done("return"),
    ]


def test_preamble_then_tool_call() -> None:
    raw = (
        "<|channel|>commentary<|message|>Checking the weather.<|end|>"
        "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
        '<|message|>{"location":"Paris"}<|call|>'
    )
    events = run(raw, chunk=4)
    assert messages(events) == [
        ("commentary", None, None, "Checking the weather.", "end"),
        ("commentary", "functions.get_weather", "<|constrain|>json", '{"location":"Paris"}', "call"),
    ]
    assert events[-1] == Done("call")
    assert events.count(Done("call")) == 1


def test_two_tool_calls_in_one_turn() -> None:
    raw = (
        "<|channel|>analysis<|message|>Two lookups.<|end|>"
        '<|start|>assistant<|channel|>commentary to=functions.a <|constrain|>json<|message|>{"x":1}<|call|>'
        '<|start|>assistant<|channel|>commentary to=functions.b <|constrain|>json<|message|>{"y":2}<|call|>'
    )
    parser = HarmonyParser()
    events: list[ParserEvent] = []
    for piece in pieces(raw):
        new = parser.feed(piece)
        if Done("call") in new:
            assert parser.done and parser.done_reason == "call"
        elif piece.data == b"<|start|>":
            assert not parser.done
        events += new
    events += parser.finish()
    assert [m[:2] for m in messages(events)] == [
        ("analysis", None),
        ("commentary", "functions.a"),
        ("commentary", "functions.b"),
    ]
    assert [e for e in events if isinstance(e, Done)] == [Done("call"), Done("call")]


@pytest.mark.parametrize(
    "header",
    [
        "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>",
        "<|start|>assistant to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>",
        "<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>",
        "<|channel|>commentary to=functions.get_weather<|constrain|>json<|message|>",
    ],
)
def test_recipient_in_channel_header_or_after_role(header: str) -> None:
    events = run(header + '{"city":"Oslo"}<|call|>', chunk=3)
    ((channel, recipient, content_type, text, end),) = messages(events)
    assert (channel, recipient, text, end) == ("commentary", "functions.get_weather", '{"city":"Oslo"}', "call")
    assert content_type in ("json", "<|constrain|>json")


def test_accessors_follow_the_open_message() -> None:
    parser = HarmonyParser()
    assert parser.state is ParserState.HEADER and parser.role == "assistant"
    for piece in pieces("<|channel|>commentary to=functions.f <|constrain|>json<|message|>{"):
        parser.feed(piece)
    assert parser.state is ParserState.CONTENT
    assert (parser.channel, parser.recipient, parser.content_type) == ("commentary", "functions.f", "<|constrain|>json")
    parser.feed(Piece(b"<|call|>", special=True))
    assert parser.channel is None and parser.recipient is None and parser.state is ParserState.EXPECT_START


TRICKY = "答えは 42 です 🎉👍🏽 — ok"


def test_multibyte_text_split_at_every_byte() -> None:
    events = run(f"<|channel|>final<|message|>{TRICKY}<|return|>", chunk=1)
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert "".join(deltas) == TRICKY
    assert all("\ufffd" not in d and d for d in deltas)


@pytest.mark.parametrize("cut", range(1, len(TRICKY.encode())))
def test_multibyte_text_split_in_two_anywhere(cut: int) -> None:
    data = TRICKY.encode()
    parser = HarmonyParser()
    events: list[ParserEvent] = []
    for piece in [
        Piece(b"<|channel|>", special=True),
        Piece(b"final"),
        Piece(b"<|message|>", special=True),
        Piece(data[:cut]),
        Piece(data[cut:]),
        Piece(b"<|return|>", special=True),
    ]:
        events += parser.feed(piece)
    assert messages(events) == [("final", None, None, TRICKY, "return")]


def test_missing_message_token_permissive() -> None:
    assert messages(run("<|channel|>final Hello world<|end|>")) == [("final", None, None, "Hello world", "end")]


def test_missing_message_token_newline_streams() -> None:
    events = run("<|channel|>final\nHello\nworld<|return|>", chunk=1)
    assert messages(events) == [("final", None, None, "Hello\nworld", "return")]
    # Streaming starts at the newline, not at the end of the message.
    first_text = next(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    assert events[first_text] == TextDelta("H")


def test_missing_message_token_keeps_recipient() -> None:
    events = run('<|channel|>commentary to=functions.f <|constrain|>json{"a":1}<|call|>')
    assert messages(events) == [("commentary", "functions.f", "<|constrain|>json", '{"a":1}', "call")]


def test_missing_message_token_strict() -> None:
    with pytest.raises(HarmonyParseError):
        run("<|channel|>final Hello world<|end|>", strict=True)


def test_plain_text_without_any_header() -> None:
    assert messages(run("Just text, no channels.")) == [(None, None, None, "Just text, no channels.", "incomplete")]


def test_stray_constrain_in_content() -> None:
    raw = "<|channel|>final<|message|>Hel<|constrain|>lo<|return|>"
    assert messages(run(raw)) == [("final", None, None, "Hello", "return")]
    with pytest.raises(HarmonyParseError):
        run(raw, strict=True)


def test_channel_without_end_starts_a_new_message() -> None:
    raw = "<|channel|>analysis<|message|>think<|channel|>final<|message|>answer<|return|>"
    assert messages(run(raw)) == [("analysis", None, None, "think", "end"), ("final", None, None, "answer", "return")]
    with pytest.raises(HarmonyParseError):
        run(raw, strict=True)


def test_missing_start_after_end() -> None:
    raw = "<|channel|>analysis<|message|>think<|end|><|channel|>final<|message|>answer<|return|>"
    assert messages(run(raw))[1] == ("final", None, None, "answer", "return")
    with pytest.raises(HarmonyParseError):
        run(raw, strict=True)


def test_stray_start_inside_content() -> None:
    raw = "<|channel|>analysis<|message|>think<|start|>assistant<|channel|>final<|message|>ok<|return|>"
    assert messages(run(raw)) == [("analysis", None, None, "think", "end"), ("final", None, None, "ok", "return")]


def test_unknown_special_token_dropped() -> None:
    events = run(b"<|channel|>final<|message|>a<|endoftext|>b<|return|>")
    assert messages(events) == [("final", None, None, "ab", "return")]


def test_everything_after_return_is_ignored() -> None:
    raw = "<|channel|>final<|message|>done<|return|>trailing<|start|>assistant"
    events = run(raw)
    assert messages(events) == [("final", None, None, "done", "return")]
    assert events[-1] == Done("return")
    with pytest.raises(HarmonyParseError):
        run(raw, strict=True)


def test_cut_mid_message_by_length_cap() -> None:
    data = "<|channel|>final<|message|>Das ist größer 😀".encode()
    parser = HarmonyParser()
    events: list[ParserEvent] = []
    for piece in pieces(data[:-2], chunk=1):  # the emoji loses its last two bytes
        events += parser.feed(piece)
    events += parser.finish()
    assert messages(events) == [("final", None, None, "Das ist größer ", "incomplete")]
    assert events[-1] == Done("end_of_input")
    assert parser.state is ParserState.DONE and parser.finish() == []


def test_cut_mid_message_strict_is_not_an_error() -> None:
    assert run("<|channel|>analysis<|message|>thinking", strict=True)[-1] == Done("end_of_input")


def test_cut_after_end() -> None:
    events = run("<|channel|>analysis<|message|>hm<|end|>")
    assert events[-2:] == [MessageEnd("end"), Done("end_of_input")]


def test_invalid_utf8_becomes_replacement_at_message_end() -> None:
    events = run(b"<|channel|>final<|message|>a\xff b\xe2\x82<|end|>")
    assert messages(events) == [("final", None, None, "a\ufffd b\ufffd", "end")]


def test_parser_without_role_expects_start() -> None:
    parser = HarmonyParser(role=None, strict=True)
    events: list[ParserEvent] = []
    for piece in pieces("<|start|>assistant<|channel|>final<|message|>hi<|end|>"):
        events += parser.feed(piece)
    assert events[0] == MessageStart("assistant", "final")
    with pytest.raises(HarmonyParseError):
        HarmonyParser(role=None, strict=True).feed(Piece(b"hello"))


def test_split_special() -> None:
    assert split_special(b"a<|channel|>b<|x|><|end|>") == [
        Piece(b"a"),
        Piece(b"<|channel|>", special=True),
        Piece(b"b<|x|>"),
        Piece(b"<|end|>", special=True),
    ]


def test_splitter_finds_tokens_across_chunks() -> None:
    data = b"<|channel|>final<|message|>x < y <|ret"
    for size in range(1, 8):
        splitter = SpecialTokenSplitter()
        out: list[Piece] = []
        for i in range(0, len(data), size):
            out += splitter.feed(data[i : i + size])
        out += splitter.feed(b"urn|>")
        out += splitter.flush()
        assert [p.data for p in out if p.special] == [b"<|channel|>", b"<|message|>", b"<|return|>"]
        assert b"".join(p.data for p in out if not p.special) == b"finalx < y "


# Cross-checks against openai-harmony's StreamableParser, fed the same tokens.

WELL_FORMED = [
    "<|channel|>analysis<|message|>Think about 你好.<|end|><|start|>assistant<|channel|>final<|message|>Answer 😀!<|return|>",
    "<|channel|>commentary<|message|>Let me check.<|end|>"
    '<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"loc":"Zürich"}<|call|>',
    "<|channel|>analysis<|message|>Use the tool.<|end|>"
    "<|start|>assistant to=functions.lookup<|channel|>commentary json<|message|>{}<|call|>",
    "<|channel|>analysis<|message|>Search.<|end|><|start|>assistant<|channel|>analysis to=browser.search code"
    '<|message|>{"q":"x"}<|call|>',
    "<|channel|>final<|message|>Résumé: naïve café — ★★★<|end|>",
]


def _tokens(encoding: Any, raw: str) -> list[int]:
    return list(encoding.encode(raw, allowed_special="all"))


def _token_pieces(encoding: Any, tokens: list[int]) -> list[Piece]:
    return [Piece(bytes(encoding._inner.decode_bytes([t])), special=encoding.is_special_token(t)) for t in tokens]


@pytest.mark.parametrize("raw", WELL_FORMED)
def test_matches_openai_harmony(raw: str, harmony_encoding: Any) -> None:
    from openai_harmony import Role, StreamableParser

    tokens = _tokens(harmony_encoding, raw)
    reference = StreamableParser(harmony_encoding, Role.ASSISTANT)
    reference_deltas: list[str] = []
    for token in tokens:
        reference.process(token)
        if reference.last_content_delta:
            reference_deltas.append(reference.last_content_delta)
    reference.process_eos()
    expected = [(m.channel, m.recipient, m.content_type, m.content[0].text) for m in reference.messages]

    parser = HarmonyParser(strict=True)
    events: list[ParserEvent] = []
    for piece in _token_pieces(harmony_encoding, tokens):
        events += parser.feed(piece)
    events += parser.finish()
    assert [m[:4] for m in messages(events)] == expected
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "".join(reference_deltas)


def test_missing_message_token_matches_permissive_harmony(harmony_encoding: Any) -> None:
    from openai_harmony import Role, StreamableParser

    raw = "<|channel|>final Hello world<|end|>"
    reference = StreamableParser(harmony_encoding, Role.ASSISTANT, strict=False)
    for token in _tokens(harmony_encoding, raw):
        reference.process(token)
    reference.process_eos()
    (message,) = reference.messages
    assert messages(run(raw)) == [(message.channel, message.recipient, None, message.content[0].text, "end")]


def test_long_text_without_header_streams_before_the_end() -> None:
    text = "é" * 200
    parser = HarmonyParser()
    streamed: list[ParserEvent] = []
    for piece in pieces(text, chunk=1):
        streamed += parser.feed(piece)
    assert streamed and streamed[0] == MessageStart("assistant")
    events = streamed + parser.finish()
    assert messages(events) == [(None, None, None, text, "incomplete")]
