"""What the chat wire sends renders into Harmony the way openai-harmony would (compat's
translation, then the Harmony pipeline): the tool round trip of a second request included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from app.gateway import build_gateway
from app.settings import load_settings
from compat.requests import ChatCompletionRequest
from compat.translate import to_internal
from pipelines.harmony.render import render_prompt
from pipelines.types import Message, ResponseFormat, Tool, ToolCall

DATE = "2026-11-21"
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather.",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["location"],
        },
    },
}


def _gateway(tmp_path: Path) -> Any:
    cfg = tmp_path / "s.toml"
    cfg.write_text(
        '[[models]]\nid = "oss"\nrole = "primary"\nformat = "harmony"\nprovider = "stub"\n'
        '[models.sampling]\nreasoning_effort = "high"\n'
    )
    return build_gateway(load_settings(cfg), current_date=DATE)


async def _prompt(gw: Any, body: dict[str, Any]) -> str:
    await gw.manager.load_all()
    wire = msgspec.convert(body, ChatCompletionRequest)
    gen = await gw.service.start(to_internal(wire, "req_test"))
    try:
        text = gen.ctx.prompt.text
        assert text is not None
        return str(text)
    finally:
        await gen.aclose()


async def test_tool_round_trip_renders_like_openai_harmony(tmp_path: Path, reference_render: Any) -> None:
    gw = _gateway(tmp_path)
    body = {
        "model": "oss",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Zürich?"},
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": "Need the tool.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location":"Zürich"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 18}'},
        ],
        "tools": [TOOL],
    }
    expected = reference_render(
        [
            Message(role="system", content="Be brief."),
            Message(role="user", content="Weather in Zürich?"),
            Message(
                role="assistant",
                reasoning="Need the tool.",
                tool_calls=(ToolCall(id="call_1", name="get_weather", arguments='{"location":"Zürich"}'),),
            ),
            Message(role="tool", content='{"temperature": 18}', tool_call_id="call_1"),
        ],
        tools=[Tool(name="get_weather", description="Current weather.", parameters=TOOL["function"]["parameters"])],  # type: ignore[index]
        reasoning_effort="high",
        current_date=DATE,
    )
    assert await _prompt(gw, body) == expected


async def test_reasoning_effort_and_tool_choice_none(tmp_path: Path, reference_render: Any) -> None:
    gw = _gateway(tmp_path)
    body = {
        "model": "oss",
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [TOOL],
        "tool_choice": "none",
        "reasoning_effort": "low",
    }
    expected = reference_render([Message(role="user", content="Hi")], reasoning_effort="low", current_date=DATE)
    assert await _prompt(gw, body) == expected


async def test_forced_function_opens_the_call(tmp_path: Path) -> None:
    gw = _gateway(tmp_path)
    body = {
        "model": "oss",
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }
    prompt = await _prompt(gw, body)
    assert prompt.endswith(
        "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
    )


def test_response_format_is_the_developer_messages_last_section(reference_render: Any) -> None:
    # openai-harmony documents the section (docs/format.md, "Structured output") but leaves
    # rendering it to the caller: the reference is its render without it, plus the section.
    # (Rendered directly: the stub of these tests takes no response format.)
    schema = {"type": "object", "properties": {"città": {"type": "string"}}, "required": ["città"]}
    messages = [Message(role="system", content="Be brief."), Message(role="user", content="Where?")]
    tools = [Tool(name="get_weather", description="Current weather.", parameters=TOOL["function"]["parameters"])]  # type: ignore[index]
    place = ResponseFormat(type="json_schema", schema=schema, name="place", description="Where it is.\nOne city.")
    plain = reference_render(messages, tools=tools, current_date=DATE)
    end = plain.index("<|end|>", plain.index("<|start|>developer"))
    section = (
        "\n\n# Response Formats\n\n## place\n\n// Where it is.\n// One city.\n"
        '{"type":"object","properties":{"città":{"type":"string"}},"required":["città"]}'
    )
    rendered = render_prompt(messages, tools=tools, current_date=DATE, response_format=place)
    assert rendered == plain[:end] + section + plain[end:]


def test_response_format_alone_makes_a_developer_message() -> None:
    place = ResponseFormat(type="json_schema", schema={"type": "object"}, name="place")
    rendered = render_prompt([Message(role="user", content="Where?")], current_date=DATE, response_format=place)
    assert '<|start|>developer<|message|># Response Formats\n\n## place\n\n{"type":"object"}<|end|>' in rendered
    # json_object has no schema to show: as on OpenAI, the messages ask for JSON
    as_json = ResponseFormat(type="json_object")
    rendered = render_prompt([Message(role="user", content="Where?")], current_date=DATE, response_format=as_json)
    assert "developer" not in rendered


async def test_required_with_several_tools_opens_no_call_for_the_stub(tmp_path: Path) -> None:
    # Only a provider that constrains decoding gets the call opened up to `to=functions.`
    # (it must then name a declared tool); the stub gets the prompt as it is.
    gw = _gateway(tmp_path)
    clock = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    body = {"model": "oss", "messages": [{"role": "user", "content": "Hi"}], "tools": [TOOL, clock]}
    assert (await _prompt(gw, {**body, "tool_choice": "required"})).endswith("<|start|>assistant")
    assert await _prompt(gw, {**body, "tool_choice": "required"}) == await _prompt(gw, body)
