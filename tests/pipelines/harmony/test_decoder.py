"""Harmony tokens -> messages (the decoder) -> OpenAI-shaped deltas (the channel mapping)."""

from __future__ import annotations

import itertools
import re

from pipelines.channels import ChannelMapper
from pipelines.harmony.decoder import HarmonyDecoder
from pipelines.harmony.split import split_special
from pipelines.types import Delta, DeltaKind, LogprobEntry, Piece, ToolCall

CONTENT, REASONING, TOOL = DeltaKind.CONTENT, DeltaKind.REASONING, DeltaKind.TOOL_CALL


def pieces(raw: str, chunk: int | None = None) -> list[Piece]:
    out: list[Piece] = []
    for piece in split_special(raw.encode()):
        if piece.special or chunk is None:
            out.append(piece)
        else:
            out += [Piece(piece.data[i : i + chunk]) for i in range(0, len(piece.data), chunk)]
    return out


class Harmony:
    """A Harmony decoder feeding the channel mapping, as a pipeline wires them."""

    def __init__(self, channels: ChannelMapper | None = None) -> None:
        self.decoder = HarmonyDecoder()
        self.channels = channels or ChannelMapper()

    def run(self, feed: list[Piece]) -> list[Delta]:
        events = [e for piece in feed for e in self.decoder.feed(piece)] + self.decoder.finish()
        return [d for d in map(self.channels.feed, events) if d is not None]


def counting_ids() -> Harmony:
    counter = itertools.count()
    return Harmony(ChannelMapper(new_id=lambda: f"call_{next(counter)}"))


def run(mapper: Harmony, feed: list[Piece]) -> list[Delta]:
    return mapper.run(feed)


def joined(deltas: list[Delta], kind: DeltaKind) -> str:
    return "".join(d.text for d in deltas if d.kind is kind)


def test_reasoning_then_final() -> None:
    mapper = Harmony()
    raw = "<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>final<|message|>Hi 😀<|return|>"
    deltas = run(mapper, pieces(raw, chunk=2))
    assert joined(deltas, REASONING) == "Think."
    assert joined(deltas, CONTENT) == "Hi 😀"
    assert not [d for d in deltas if d.kind is TOOL]
    assert not mapper.channels.has_calls and mapper.decoder.done_reason == "return"
    # `<|message|>` plus the three content pieces of "Think."
    assert mapper.decoder.reasoning_tokens == 4


def test_reasoning_tokens_use_piece_token_counts() -> None:
    mapper = Harmony()
    feed = [
        Piece(b"<|channel|>", special=True),
        Piece(b"analysis", tokens=1),
        Piece(b"<|message|>", special=True),
        Piece(b"long thought", tokens=5),
        Piece(b"<|end|>", special=True),
        Piece(b"<|start|>", special=True),
        Piece(b"assistant<|", tokens=1),
    ]
    run(mapper, feed)
    assert mapper.decoder.reasoning_tokens == 6


def test_preamble_then_tool_call() -> None:
    mapper = counting_ids()
    raw = (
        "<|channel|>commentary<|message|>Let me check.<|end|>"
        "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
        '<|message|>{"city": "Paris"}<|call|>'
    )
    deltas = run(mapper, pieces(raw, chunk=3))
    assert joined(deltas, CONTENT) == "Let me check."
    calls = [d for d in deltas if d.kind is TOOL]
    assert calls[0] == Delta(TOOL, "", tool_index=0, tool_id="call_0", tool_name="get_weather")
    assert all(d.tool_id is None and d.tool_name is None and d.tool_index == 0 for d in calls[1:])
    assert "".join(d.text for d in calls) == '{"city": "Paris"}'
    assert mapper.channels.tool_calls == [ToolCall("call_0", "get_weather", '{"city": "Paris"}')]
    assert mapper.channels.invalid_calls() == [] and mapper.decoder.done_reason == "call"


def test_two_tool_calls_get_their_own_index_and_id() -> None:
    mapper = Harmony()
    raw = (
        '<|channel|>commentary to=functions.a <|constrain|>json<|message|>{"x":1}<|call|>'
        "<|start|>assistant to=functions.b<|channel|>commentary json<|message|>{}<|call|>"
    )
    deltas = run(mapper, pieces(raw))
    firsts = [d for d in deltas if d.tool_name is not None]
    assert [(d.tool_index, d.tool_name) for d in firsts] == [(0, "a"), (1, "b")]
    ids = [d.tool_id for d in firsts]
    assert all(i is not None and re.fullmatch(r"call_[A-Za-z0-9]{24}", i) for i in ids)
    assert ids[0] != ids[1]
    assert [(c.name, c.arguments) for c in mapper.channels.tool_calls] == [("a", '{"x":1}'), ("b", "{}")]


def test_other_recipients_are_tool_calls_too() -> None:
    mapper = counting_ids()
    raw = '<|channel|>analysis to=browser.search code<|message|>{"query":"x"}<|call|>'
    deltas = run(mapper, pieces(raw))
    assert deltas[0].tool_name == "browser.search"
    assert mapper.channels.tool_calls[0].name == "browser.search"


def test_arguments_cut_by_length_cap() -> None:
    mapper = counting_ids()
    deltas = run(mapper, pieces('<|channel|>commentary to=functions.f <|constrain|>json<|message|>{"a": [1, 2'))
    assert joined(deltas, TOOL) == '{"a": [1, 2'
    assert mapper.channels.tool_calls == [ToolCall("call_0", "f", '{"a": [1, 2')]
    assert mapper.channels.invalid_calls() == ["f"]
    assert mapper.decoder.done_reason == "end_of_input"


def test_channels_without_recipient() -> None:
    mapper = Harmony()
    raw = (
        "<|channel|>weird<|message|>hidden<|end|>"
        "<|start|>assistant<|channel|>commentary<|message|>preamble<|end|>"
        "<|start|>assistant to=all<|channel|>final<|message|>answer<|return|>"
    )
    deltas = run(mapper, pieces(raw))
    assert joined(deltas, REASONING) == "hidden"
    assert joined(deltas, CONTENT) == "preambleanswer"
    assert not mapper.channels.has_calls


def test_text_without_channel_is_content() -> None:
    mapper = Harmony()
    assert joined(run(mapper, pieces("no harmony at all")), CONTENT) == "no harmony at all"


def test_logprobs_ride_on_content_deltas() -> None:
    first = LogprobEntry(token="\xe4\xbd", logprob=-0.1, bytes=[0xE4, 0xBD])
    second = LogprobEntry(token="\xa0", logprob=-0.2, bytes=[0xA0])
    thinking = LogprobEntry(token="hm", logprob=-0.3, bytes=[104, 109])
    mapper = Harmony()
    feed = [
        *pieces("<|channel|>analysis<|message|>"),
        Piece(b"hm", logprob=thinking),
        *pieces("<|end|><|start|>assistant<|channel|>final<|message|>"),
        Piece("你".encode()[:2], logprob=first),
        Piece("你".encode()[2:], logprob=second),
        *pieces("<|return|>"),
    ]
    deltas = run(mapper, feed)
    assert [(d.kind, d.text, d.logprobs) for d in deltas] == [(REASONING, "hm", ()), (CONTENT, "你", (first, second))]
