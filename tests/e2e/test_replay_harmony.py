"""gpt-oss transcripts replayed through the whole served gateway: Harmony channels
reach the OpenAI SDK as reasoning, content and tool calls, streamed and not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.served import ServedGateway, serve

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[1] / "data" / "harmony"
TRANSCRIPTS = ("reasoning_final", "tool_call", "two_calls", "after_tool")
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a place.",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
            },
            "required": ["location"],
        },
    },
}


def _config() -> str:
    out = ["[server]", 'reasoning_fields = "both"', ""]
    for name in TRANSCRIPTS:
        out += [
            "[[models]]",
            f'id = "replay-{name.replace("_", "-")}"',
            'role = "primary"',
            'format = "harmony"',
            'provider = "replay"',
            f'replay_file = "{DATA / (name + ".txt")}"',
            "replay_chunk_bytes = 3",
            "",
        ]
    return "\n".join(out)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    with serve(_config(), tmp_path_factory.mktemp("replay-gw")) as gw:
        yield gw


@pytest.fixture(scope="module")
def client(gateway: ServedGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.api_url, api_key="unused", max_retries=0)


def _stream(client: openai.OpenAI, model: str, **kw: Any) -> dict[str, Any]:
    content, reasoning, reasoning_alt = [], [], []
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], stream=True, tools=[WEATHER_TOOL], **kw
    ):
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        delta = choice.delta
        content.append(delta.content or "")
        extra = delta.model_extra or {}
        reasoning.append(extra.get("reasoning_content") or "")
        reasoning_alt.append(extra.get("reasoning") or "")
        for tc in delta.tool_calls or []:
            slot = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            if tc.id:
                assert not slot["id"], "the id comes once, in the first delta of a call"
                slot["id"] = tc.id
            if tc.function and tc.function.name:
                slot["name"] += tc.function.name
            if tc.function and tc.function.arguments:
                slot["arguments"] += tc.function.arguments
        if choice.finish_reason:
            finish = choice.finish_reason
    assert "".join(reasoning) == "".join(reasoning_alt)
    return {
        "content": "".join(content),
        "reasoning": "".join(reasoning),
        "calls": [calls[i] for i in sorted(calls)],
        "finish": finish,
    }


def test_reasoning_then_final_with_cjk_and_emoji(client: openai.OpenAI) -> None:
    out = _stream(client, "replay-reasoning-final")
    assert out["reasoning"] == "The user greets in Chinese. Reply warmly: 你好 means hello 👋."
    assert out["content"] == "你好！Nice to meet you 😀 — how can I help?"
    assert out["calls"] == [] and out["finish"] == "stop"


def test_tool_call_streams_id_name_then_arguments(client: openai.OpenAI) -> None:
    out = _stream(client, "replay-tool-call")
    assert out["reasoning"] == "Need the weather; call the tool."
    assert out["content"] == ""
    [call] = out["calls"]
    assert call["id"].startswith("call_") and call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == {"location": "Zürich", "unit": "celsius"}
    assert out["finish"] == "tool_calls"


def test_preamble_then_two_calls(client: openai.OpenAI) -> None:
    out = _stream(client, "replay-two-calls")
    assert out["content"] == "Let me check both cities."
    assert [json.loads(c["arguments"]) for c in out["calls"]] == [{"location": "Paris"}, {"location": "東京"}]
    assert len({c["id"] for c in out["calls"]}) == 2
    assert out["finish"] == "tool_calls"


@pytest.mark.parametrize("stream", [False, True])
def test_parallel_tool_calls_false_answers_with_the_first_call_only(client: openai.OpenAI, stream: bool) -> None:
    out = client.chat.completions.create(
        model="replay-two-calls",
        messages=[{"role": "user", "content": "hi"}],
        tools=[WEATHER_TOOL],
        parallel_tool_calls=False,
        stream=stream,
    )
    if stream:
        names: list[str] = []
        args, finish = "", None
        for chunk in out:  # type: ignore[union-attr]
            for choice in chunk.choices:
                for call in choice.delta.tool_calls or []:
                    names += [call.function.name] if call.function and call.function.name else []
                    args += (call.function.arguments or "") if call.function else ""
                finish = choice.finish_reason or finish
        assert (names, json.loads(args), finish) == (["get_weather"], {"location": "Paris"}, "tool_calls")
    else:
        calls = out.choices[0].message.tool_calls or []  # type: ignore[union-attr]
        assert [json.loads(c.function.arguments) for c in calls] == [{"location": "Paris"}]
        assert out.choices[0].finish_reason == "tool_calls"  # type: ignore[union-attr]


def test_non_stream_aggregates_the_same_way(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="replay-two-calls", messages=[{"role": "user", "content": "hi"}], tools=[WEATHER_TOOL]
    )
    msg = out.choices[0].message
    assert out.choices[0].finish_reason == "tool_calls"
    assert msg.content == "Let me check both cities."
    assert (msg.model_extra or {})["reasoning_content"] == "Two lookups."
    assert [c.function.name for c in msg.tool_calls or []] == ["get_weather", "get_weather"]
    assert out.usage is not None and out.usage.completion_tokens_details is not None
    assert out.usage.completion_tokens_details.reasoning_tokens > 0


def test_length_cap_cuts_mid_message(client: openai.OpenAI) -> None:
    out = _stream(client, "replay-reasoning-final", max_tokens=12)
    assert out["finish"] == "length"
    # 12 pieces: `<|channel|>`, "ana" "lys" "is", `<|message|>`, then 7 pieces of 3 bytes
    assert out["reasoning"] == "The user greets in Ch"
    assert out["content"] == "" and out["calls"] == []


def test_tool_round_trip_is_accepted(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(
        model="replay-tool-call", messages=[{"role": "user", "content": "Weather in Zürich?"}], tools=[WEATHER_TOOL]
    )
    [call] = first.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Zürich", "unit": "celsius"}
    messages: list[Any] = [
        {"role": "user", "content": "Weather in Zürich?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": call.function.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 18}'},
    ]
    second = client.chat.completions.create(model="replay-after-tool", messages=messages, tools=[WEATHER_TOOL])
    answer = second.choices[0]
    assert answer.message.content == "It is 18 °C in Zürich right now."
    assert (answer.message.model_extra or {})["reasoning_content"] == "It is 18 degrees in Zürich."
    assert answer.message.tool_calls is None and answer.finish_reason == "stop"
    # The replayed answer is the same whatever the prompt: what shows that the gateway read the
    # round trip is that it pairs the tool result with the call by id. A result that answers
    # no call of the conversation is refused, naming it.
    stray = [*messages[:2], {**messages[2], "tool_call_id": "call_unknown"}]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="replay-after-tool", messages=stray, tools=[WEATHER_TOOL])
    body = info.value.body
    assert isinstance(body, dict) and body["param"] == "messages", body
    assert "call_unknown" in body["message"] and "answers no earlier tool call" in body["message"], body


def test_required_with_several_tools_replays_the_script(client: openai.OpenAI) -> None:
    # What pydantic-ai and LangChain's tool_choice="any" send: a replay answers with its script.
    clock = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    out = client.chat.completions.create(
        model="replay-tool-call",
        messages=[{"role": "user", "content": "Weather in Zürich?"}],
        tools=[WEATHER_TOOL, clock],  # type: ignore[list-item]
        tool_choice="required",
    )
    [call] = out.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather" and out.choices[0].finish_reason == "tool_calls"


def test_response_format_replays_the_script(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="replay-reasoning-final",
        messages=[{"role": "user", "content": "hi"}],
        response_format={"type": "json_schema", "json_schema": {"name": "greeting", "schema": {"type": "object"}}},
    )
    assert out.choices[0].message.content == "你好！Nice to meet you 😀 — how can I help?"
