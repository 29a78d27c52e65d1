"""The stub's structured answers (issue 14, items 2 and 4): a response format gets a value
valid for its schema, a forced tool choice a call with arguments valid for the tool, logprobs
deterministic values; each checked output is reported (`StructuredOutputChecked`)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from pipelines.events import GenerationCompleted, StructuredOutputChecked
from pipelines.types import DeltaKind, ResponseFormat, Tool
from tests.support.harness import Harness

PERSON = {
    "properties": {
        "name": {"title": "Name", "type": "string", "minLength": 2, "maxLength": 12},
        "age": {"title": "Age", "type": "integer", "minimum": 18, "maximum": 150},
        "email": {"type": "string", "format": "email"},
        "code": {"type": "string", "pattern": "^[A-Z]{3}-\\d{2}$"},
        "tags": {"type": "array", "items": {"enum": ["x", "y"]}, "minItems": 2},
        "pet": {"$ref": "#/$defs/Pet"},
        "nick": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
    },
    "required": ["name", "age", "email", "code", "tags", "pet"],
    "$defs": {
        "Pet": {
            "type": "object",
            "properties": {"legs": {"type": "integer", "exclusiveMinimum": 0}},
            "required": ["legs"],
        }
    },
    "title": "Person",
    "type": "object",
}
WEATHER = Tool(
    name="weather",
    parameters={"type": "object", "properties": {"city": {"type": "string", "maxLength": 5}}, "required": ["city"]},
)
CLOCK = Tool(name="clock", parameters={"type": "object", "properties": {"tz": {"enum": ["UTC"]}}, "required": ["tz"]})


def _content(deltas: list[Any]) -> str:
    return "".join(d.text for d in deltas if d.kind is DeltaKind.CONTENT)


@pytest.mark.parametrize("model", ["stub-chat", "stub-harmony"])
async def test_json_schema_gets_a_valid_deterministic_answer(harness: Harness, model: str) -> None:
    rf = ResponseFormat(type="json_schema", schema=PERSON, name="person")
    gen, deltas = await harness.run(harness.request(model, response_format=rf))
    value = json.loads(_content(deltas))
    jsonschema.validate(value, PERSON, format_checker=jsonschema.FormatChecker())
    _, again = await harness.run(harness.request(model, response_format=rf))
    assert _content(again) == _content(deltas)
    (check,) = harness.of(StructuredOutputChecked, gen.request_id)
    assert (check.target, check.outcome, check.stub) == ("response_format", "valid", True)
    (done,) = harness.of(GenerationCompleted, gen.request_id)
    assert done.stop_reason == "stub"


async def test_json_object_gets_an_object(harness: Harness) -> None:
    _, deltas = await harness.run(harness.request("stub-chat", response_format=ResponseFormat(type="json_object")))
    assert isinstance(json.loads(_content(deltas)), dict)


async def test_an_unenforceable_schema_is_reported_invalid_never_a_silent_pass(harness: Harness) -> None:
    schema = {"type": "string", "not": {"type": "string"}}  # nothing satisfies it
    gen, _ = await harness.run(
        harness.request("stub-chat", response_format=ResponseFormat(type="json_schema", schema=schema))
    )
    (check,) = harness.of(StructuredOutputChecked, gen.request_id)
    assert check.outcome == "invalid" and check.errors
    assert check.unenforced == ["not"]


@pytest.mark.parametrize(("choice", "called"), [("function:clock", "clock"), ("required", "weather")])
async def test_a_forced_tool_choice_on_harmony_gets_a_call_with_valid_arguments(
    harness: Harness, choice: str, called: str
) -> None:
    tools = (WEATHER, CLOCK) if choice != "required" else (WEATHER,)
    gen, deltas = await harness.run(harness.request("stub-harmony", tools=tools, tool_choice=choice))
    calls = [d for d in deltas if d.kind is DeltaKind.TOOL_CALL]
    assert calls[0].tool_name == called
    arguments = json.loads("".join(d.text for d in calls))
    jsonschema.validate(arguments, next(t for t in tools if t.name == called).parameters)
    (check,) = harness.of(StructuredOutputChecked, gen.request_id)
    assert (check.target, check.tool, check.outcome) == ("tool_arguments", called, "valid")


@pytest.mark.parametrize("model", ["stub-chat", "stub-harmony"])
async def test_logprobs_are_deterministic_and_shaped(harness: Harness, model: str) -> None:
    req = harness.request(model, logprobs=True, top_logprobs=3)
    runs = []
    for _ in range(2):
        gen, deltas = await harness.run(req)
        assert gen.result is not None
        runs.append([(e.token, e.logprob, [t.logprob for t in e.top_logprobs]) for e in gen.result.logprobs])
    assert runs[0] == runs[1] and runs[0]
    for _token, logprob, tops in runs[0]:
        assert logprob <= 0 and len(tops) == 3 and tops == sorted(tops, reverse=True) and tops[0] == logprob
    assert "".join(t for t, _, _ in runs[0]) == _content(deltas)
