"""The real llama.cpp Harmony path through a served gateway, on the tiny random-weight
gpt-oss GGUF (the real o200k_harmony vocabulary): its output is noise, but prompts, special
tokens and grammars are what gpt-oss-20b would get. A forced call names a declared tool with
arguments valid for its schema; a response format gives a schema-valid final message;
client text never becomes Harmony structure, and prompts count exactly openai-harmony's ids.
"""

from __future__ import annotations

import datetime
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from pipelines.types import Message, Tool, ToolCall
from tests.support.harmony_reference import FORGED, SCRIPTS, ReferenceTokens
from tests.support.served import ServedGateway, serve

pytestmark = pytest.mark.slow

MODEL = "tiny-oss"


def _function(name: str, prop: str, values: list[str]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"Looks up the {prop}.",
            "parameters": {
                "type": "object",
                "properties": {prop: {"type": "string", "enum": values}},
                "required": [prop],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }


TOOLS = [_function("get_weather", "city", ["Paris", "Rome", "Zürich"]), _function("get_time", "zone", ["UTC", "CET"])]
VERDICT = {
    "type": "object",
    "properties": {
        "ok": {"type": "boolean"},
        "grade": {"type": "string", "enum": ["a", "b", "c"]},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["x", "y"]}, "maxItems": 2},
    },
    "required": ["ok", "grade", "tags"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def gateway(tiny_gpt_oss: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    config = "\n".join(
        [
            "[[models]]",
            f'id = "{MODEL}"',
            'role = "primary"',
            'format = "harmony"',
            'provider = "llama_cpp"',
            f'path = "{tiny_gpt_oss}"',
            "context_length = 2048",
            "threads = 2",
            "",
        ]
    )
    with serve(config, tmp_path_factory.mktemp("tiny-oss-gw")) as gw:
        yield gw


@pytest.fixture(scope="module")
def client(gateway: ServedGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.api_url, api_key="unused", max_retries=0)


def test_required_with_several_tools_calls_a_declared_one(client: openai.OpenAI) -> None:
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    for seed in range(3):
        out = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Weather or time?"}],
            tools=TOOLS,  # type: ignore[arg-type]
            tool_choice="required",
            temperature=1.0,
            seed=seed,
            max_tokens=48,
        )
        choice = out.choices[0]
        assert choice.finish_reason == "tool_calls"
        [call] = choice.message.tool_calls or []
        assert call.type == "function"
        jsonschema.validate(json.loads(call.function.arguments), schemas[call.function.name])


def test_required_call_streams_the_same_way(client: openai.OpenAI) -> None:
    names, arguments, finish = [], [], None
    for chunk in client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather or time?"}],
        tools=TOOLS,  # type: ignore[arg-type]
        tool_choice="required",
        temperature=1.0,
        seed=7,
        max_tokens=48,
        stream=True,
    ):
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for tc in choice.delta.tool_calls or []:
                names.append((tc.function and tc.function.name) or "")
                arguments.append((tc.function and tc.function.arguments) or "")
    name = "".join(names)
    assert finish == "tool_calls"
    assert name in {"get_weather", "get_time"}
    schema = next(t["function"]["parameters"] for t in TOOLS if t["function"]["name"] == name)
    jsonschema.validate(json.loads("".join(arguments)), schema)


def test_response_format_gives_a_schema_valid_final_message(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Grade this."}],
        response_format={"type": "json_schema", "json_schema": {"name": "verdict", "schema": VERDICT, "strict": True}},
        temperature=0.0,
        max_tokens=64,
    )
    choice = out.choices[0]
    assert choice.finish_reason == "stop"
    jsonschema.validate(json.loads(choice.message.content or ""), VERDICT)


def test_json_object_holds_the_final_message_to_json(client: openai.OpenAI) -> None:
    # Random weights open a JSON string and rarely close it: what shows here is that the
    # final message is JSON from its first character (any JSON object, no schema).
    out = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Answer in JSON."}],
        response_format={"type": "json_object"},
        temperature=0.0,
        max_tokens=8,
    )
    assert (out.choices[0].message.content or "").startswith("{")


def _count(client: openai.OpenAI, messages: list[dict[str, Any]], **kw: Any) -> int:
    out = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        max_tokens=1,
        reasoning_effort="low",
        **kw,  # type: ignore[arg-type]
    )
    assert out.usage is not None
    return out.usage.prompt_tokens


def _wire_and_internal(text: str) -> tuple[list[dict[str, Any]], list[Message]]:
    """A conversation with `text` in a user message and a tool result, as the wire sends it
    and as the reference renders it."""
    arguments = json.dumps({"city": "Paris"})
    wire = [
        {"role": "user", "content": text},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": text},
    ]
    internal = [
        Message(role="user", content=text),
        Message(role="assistant", tool_calls=(ToolCall(id="c1", name="get_weather", arguments=arguments),)),
        Message(role="tool", tool_call_id="c1", content=text),
    ]
    return wire, internal


def _tools() -> list[Tool]:
    return [
        Tool(
            name=t["function"]["name"], description=t["function"]["description"], parameters=t["function"]["parameters"]
        )
        for t in TOOLS
    ]


@pytest.mark.parametrize("text", [FORGED, *SCRIPTS.values()], ids=["forged", *SCRIPTS])
def test_prompt_counts_openai_harmonys_ids(client: openai.OpenAI, reference_tokens: ReferenceTokens, text: str) -> None:
    # Forged structure read as special tokens, or marks split the way llama.cpp splits them,
    # would both change the count.
    wire, internal = _wire_and_internal(text)
    expected = reference_tokens(
        internal, tools=_tools(), reasoning_effort="low", current_date=datetime.date.today().isoformat()
    )
    assert _count(client, wire, tools=TOOLS) == len(expected)


HOSTILE: list[Any] = [
    {},
    {"type": "number"},
    {"enum": []},
    {"anyOf": []},
    {"$ref": "#/nowhere"},
    {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
    {"type": "object", "properties": {"n": {"$ref": "#"}}},
    {"properties": {"x": True}},
    {"type": ["string", "null"]},
    {"const": 'x"\\\u0001'},
    {"enum": [{"a": 1}, [1, 2], None, "<|end|>", "<|return|>", '"]']},
    {"type": "object", "properties": {'a b"\\\n\u0000<|call|>': {"type": "string", "maxLength": 2}}},
    {"type": "string", "minLength": 5, "maxLength": 2},
    {"type": "array", "minItems": 3, "maxItems": 1},
    {"type": "string", "pattern": "^[$"},
    {"type": "string", "pattern": "^a{2,1}$"},
    {"type": "string", "pattern": "^\\p{L}+$"},
    {"type": "string", "format": "date-time"},
    {"oneOf": [{"type": "integer"}, {"type": "boolean"}]},
    {"allOf": [{"type": "object"}, {"required": ["a"]}]},
    {"prefixItems": [{"type": "integer"}], "items": False},
    {"type": "object", "additionalProperties": {"type": "integer"}},
    {"type": "bogus"},
    {
        "type": "object",
        "properties": {"deep": {"type": "array", "items": {"type": "array", "items": {"type": "array"}}}},
    },
]


def _random_schema(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.choice(["string", "integer", "number", "boolean", "null", "object", "array", "enum", "any"])
    if kind == "enum":
        return {"enum": rng.sample(["a", "<|channel|>", '"', "\\", 1, None, True, "é"], rng.randint(1, 4))}
    if kind == "any":
        return rng.choice([{}, True, {"anyOf": [{"type": "string"}, {"type": "integer"}]}])
    if kind == "object" and depth < 3:
        names = rng.sample(["a", "b c", "<|end|>", 'q"', "ü", "x-y"], rng.randint(0, 3))
        props = {n: _random_schema(rng, depth + 1) for n in names}
        return {"type": "object", "properties": props, "required": names[: rng.randint(0, len(names))]}
    if kind == "array" and depth < 3:
        return {"type": "array", "items": _random_schema(rng, depth + 1), "maxItems": rng.randint(0, 3)}
    if kind == "string":
        return {"type": "string", "maxLength": rng.randint(0, 6)}
    return {"type": kind if kind not in ("object", "array") else "boolean"}


def test_hostile_schemas_and_tool_lists_are_answered_or_refused(gateway: ServedGateway) -> None:
    # Every schema reaches llama.cpp as part of a Harmony grammar (a strict tool's arguments,
    # or the final message of a response format): none may crash the gateway, every refusal
    # is a 400 in OpenAI's envelope.
    rng = random.Random(14)
    # about 500 schemas, each twice: a thousand grammars through llama.cpp's Harmony path
    schemas = [*HOSTILE, *(_random_schema(rng) for _ in range(476))]
    statuses = []
    with httpx.Client(base_url=gateway.api_url, timeout=60.0) as http:
        for i, schema in enumerate(schemas):
            tool = {"type": "function", "function": {"name": f"f{i}", "parameters": schema, "strict": True}}
            bodies = [
                {"tools": [tool, TOOLS[0]], "tool_choice": "required"},
                {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}},
            ]
            for extra in bodies:
                body = {"model": MODEL, "messages": [{"role": "user", "content": "go"}], "max_tokens": 2, **extra}
                response = http.post("/chat/completions", json=body)
                statuses.append(response.status_code)
                assert response.status_code in (200, 400), response.text
                if response.status_code == 400:
                    error = response.json()["error"]
                    assert error["type"] == "invalid_request_error" and error["message"] and error["code"]
        assert http.get(gateway.base_url + "/health").status_code == 200
    assert 200 in statuses and 400 in statuses
