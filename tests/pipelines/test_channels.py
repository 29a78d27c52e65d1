"""Messages -> deltas: the one mapping every format and backend goes through."""

from __future__ import annotations

import itertools
import re

from pipelines.channels import ChannelMapper, new_tool_call_id
from pipelines.types import Close, Delta, DeltaKind, LogprobEntry, MessageEvent, Open, Text, ToolCall

CONTENT, REASONING, TOOL = DeltaKind.CONTENT, DeltaKind.REASONING, DeltaKind.TOOL_CALL


def counting() -> ChannelMapper:
    counter = itertools.count()
    return ChannelMapper(new_id=lambda: f"call_{next(counter)}")


def run(mapper: ChannelMapper, events: list[MessageEvent]) -> list[Delta]:
    return [d for d in map(mapper.feed, events) if d is not None]


def test_channels_map_to_reasoning_and_content() -> None:
    deltas = run(
        ChannelMapper(),
        [
            Open(channel="analysis"),
            Text("think"),
            Close(),
            Open(channel="invented"),
            Text("hidden"),
            Open(channel="commentary"),
            Text("preamble "),
            Open(channel="final", recipient="user"),
            Text("answer"),
            Open(channel=None),
            Text("!"),
        ],
    )
    assert [(d.kind, d.text) for d in deltas] == [
        (REASONING, "think"),
        (REASONING, "hidden"),
        (CONTENT, "preamble "),
        (CONTENT, "answer"),
        (CONTENT, "!"),
    ]


def test_text_outside_a_message_is_dropped() -> None:
    mapper = ChannelMapper()
    assert run(mapper, [Text("stray"), Open(channel="final"), Text("kept"), Close(), Text("stray")]) == [
        Delta(CONTENT, "kept")
    ]


def test_a_recipient_makes_a_call_named_without_functions_prefix() -> None:
    mapper = counting()
    deltas = run(
        mapper, [Open(channel="commentary", recipient="functions.get_weather"), Text('{"city":'), Text('"P"}')]
    )
    assert deltas == [
        Delta(TOOL, "", tool_index=0, tool_id="call_0", tool_name="get_weather"),
        Delta(TOOL, '{"city":', tool_index=0),
        Delta(TOOL, '"P"}', tool_index=0),
    ]
    assert mapper.tool_calls == [ToolCall("call_0", "get_weather", '{"city":"P"}')]
    assert mapper.invalid_calls() == []


def test_backend_call_ids_are_kept_and_interleaved_calls_resume() -> None:
    mapper = ChannelMapper()
    deltas = run(
        mapper,
        [
            Open(recipient="functions.a", call_id="up_1"),
            Text('{"x":'),
            Open(recipient="functions.b", call_id="up_2"),
            Text("{}"),
            Open(recipient="functions.a", call_id="up_1"),
            Text("1}"),
        ],
    )
    firsts = [d for d in deltas if d.tool_name is not None]
    assert [(d.tool_index, d.tool_id, d.tool_name) for d in firsts] == [(0, "up_1", "a"), (1, "up_2", "b")]
    assert [d.tool_index for d in deltas if d.tool_name is None] == [0, 1, 0]
    assert mapper.tool_calls == [ToolCall("up_1", "a", '{"x":1}'), ToolCall("up_2", "b", "{}")]


def test_cut_off_arguments_are_reported_invalid() -> None:
    mapper = counting()
    run(mapper, [Open(recipient="functions.f"), Text('{"a": [1')])
    assert mapper.invalid_calls() == ["f"]


def test_logprobs_ride_on_content_only() -> None:
    entry = LogprobEntry(token="a", logprob=-0.5, bytes=[97])
    deltas = run(
        ChannelMapper(),
        [Open(channel="analysis"), Text("hm", logprobs=(entry,)), Open(channel="final"), Text("", logprobs=(entry,))],
    )
    assert deltas == [Delta(REASONING, "hm"), Delta(CONTENT, "", logprobs=(entry,))]


def test_backend_reasoning_tokens_are_counted() -> None:
    mapper = ChannelMapper()
    run(
        mapper,
        [
            Open(channel="analysis"),
            Text("a", tokens=2),
            Text("b", tokens=1),
            Open(channel="final"),
            Text("c", tokens=4),
        ],
    )
    assert mapper.reasoning_tokens == 3


def test_new_tool_call_id_shape() -> None:
    ids = {new_tool_call_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"call_[A-Za-z0-9]{24}", i) for i in ids)


def test_a_call_without_argument_text_gets_an_empty_object_at_the_end() -> None:
    mapper = counting()
    run(mapper, [Open(recipient="functions.now"), Close(), Open(recipient="functions.f"), Text('{"a": 1')])
    assert mapper.finish() == [Delta(TOOL, "{}", tool_index=0)]
    assert mapper.tool_calls == [ToolCall("call_0", "now", "{}"), ToolCall("call_1", "f", '{"a": 1')]
    assert mapper.invalid_calls() == ["f"]  # cut short: left as it came, and reported


def test_one_call_per_turn_when_asked_the_second_is_not_opened() -> None:
    mapper = ChannelMapper(max_calls=1)
    deltas = run(
        mapper,
        [
            Open(recipient="functions.a", call_id="x"),
            Text("{}"),
            Open(recipient="functions.b", call_id="y"),
            Text("{}"),
        ],
    )
    assert [d.tool_name for d in deltas if d.tool_name] == ["a"]
    assert mapper.over and [c.name for c in mapper.tool_calls] == ["a"]
    assert run(mapper, [Open(recipient="functions.a", call_id="x"), Text("more")])  # the first may go on
