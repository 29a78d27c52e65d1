"""Forced tool calls on chat-template models without tool syntax: held by a grammar to a
call of a declared tool, read back as that call; `auto` stays a clear refusal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import msgspec
import pytest
import pytest_asyncio

from pipelines.errors import Unsupported
from pipelines.formats.forced_calls import ForcedCallDecoder, call_format, forced_tools, with_tools_note
from pipelines.types import Close, DeltaKind, GenerationRequest, Message, Open, Piece, Text, Tool
from tests.pipelines.conftest import generations
from tests.support.configs import smollm2
from tests.support.harness import Harness

WEATHER = Tool(
    name="get_weather",
    description="The weather in a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 30}},
        "required": ["city"],
        "additionalProperties": False,
    },
)
TIME = Tool(
    name="get_time",
    description="The time in a timezone.",
    parameters={
        "type": "object",
        "properties": {"timezone": {"type": "string", "maxLength": 30}},
        "required": ["timezone"],
        "additionalProperties": False,
    },
)


def _request(tool_choice: str, tools: tuple[Tool, ...] = (WEATHER, TIME), **kw: Any) -> GenerationRequest:
    return GenerationRequest(
        request_id="r",
        model="smol",
        messages=(Message(role="user", content="What is the weather in Paris?"),),
        tools=tools,
        tool_choice=tool_choice,
        **kw,
    )


def test_which_tools_a_call_is_forced_to() -> None:
    assert forced_tools(_request("required")) == (WEATHER, TIME)
    assert forced_tools(_request("function:get_time")) == (TIME,)
    assert forced_tools(_request("auto")) == ()
    assert forced_tools(_request("none")) == ()


def test_the_call_schema_names_each_tool_with_its_own_arguments() -> None:
    one = call_format((WEATHER,))
    assert one.type == "json_schema" and one.strict
    assert one.schema is not None and one.schema["properties"]["name"] == {"const": "get_weather"}
    both = call_format((WEATHER, TIME)).schema
    assert both is not None
    validator = jsonschema.Draft202012Validator(both)
    assert validator.is_valid({"name": "get_time", "arguments": {"timezone": "UTC"}})
    assert not validator.is_valid({"name": "get_time", "arguments": {"city": "Paris"}})
    assert not validator.is_valid({"name": "other", "arguments": {}})


def test_the_tools_are_described_in_the_system_message() -> None:
    user = Message(role="user", content="hi")
    added = with_tools_note((user,), (WEATHER,))
    assert added[0].role == "system" and "get_weather" in added[0].content and added[1] == user
    system = Message(role="system", content="Be brief.")
    merged = with_tools_note((system, user), (WEATHER,))
    assert len(merged) == 2 and merged[0].content.startswith("Be brief.") and "get_weather" in merged[0].content


def _decode(*chunks: bytes) -> list[Any]:
    decoder = ForcedCallDecoder()
    events = [e for chunk in chunks for e in decoder.feed(Piece(chunk))]
    assert events == []  # nothing is said until the call is whole
    return decoder.finish()


def test_a_whole_call_becomes_a_call() -> None:
    events = _decode(b'{"name": "get_weather", ', b'"arguments": {"city": "Par', b'is"}}')
    assert events == [Open(channel="commentary", recipient="functions.get_weather"), Text('{"city":"Paris"}'), Close()]


def test_text_that_is_not_a_whole_call_stays_text() -> None:
    cut = _decode(b'{"name": "get_weather", "argu')
    assert cut == [Open(channel="final"), Text('{"name": "get_weather", "argu'), Close()]
    assert _decode(b'{"city": "Paris"}')[1] == Text('{"city": "Paris"}')
    assert _decode() == []


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def harness() -> AsyncIterator[Harness]:
    yield Harness(generations(smollm2("smol")))


def _calls(deltas: list[Any]) -> dict[int, dict[str, str]]:
    calls: dict[int, dict[str, str]] = {}
    for d in deltas:
        if d.kind is DeltaKind.TOOL_CALL:
            call = calls.setdefault(d.tool_index, {"name": "", "arguments": ""})
            call["name"] += d.tool_name or ""
            call["arguments"] += d.text or ""
    return calls


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("choice", ["required", "function:get_time"])
async def test_smollm2_makes_the_forced_call(harness: Harness, choice: str) -> None:
    gen, deltas = await harness.run(_request(choice))
    [call] = _calls(deltas).values()
    expected = {"required": ("get_weather", "get_time"), "function:get_time": ("get_time",)}[choice]
    assert call["name"] in expected
    tool = WEATHER if call["name"] == "get_weather" else TIME
    jsonschema.validate(msgspec.json.decode(call["arguments"]), tool.parameters)
    assert gen.result is not None and gen.result.finish_reason == "tool_calls"
    assert not [d for d in deltas if d.kind is DeltaKind.CONTENT and d.text]


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_auto_is_refused_naming_tool_choice(harness: Harness) -> None:
    with pytest.raises(Unsupported) as caught:
        await harness.run(_request("auto"))
    assert caught.value.param == "tool_choice"
    assert "required" in str(caught.value)
