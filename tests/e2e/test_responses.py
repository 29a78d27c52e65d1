"""`POST /v1/responses` with the unmodified openai SDK against a served gateway: the stub
models (a chat one and a Harmony one), and real SmolLM2. Every streamed event is checked
against the SDK's own typed models. Stored responses, read back and continued:
test_responses_store.py."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import (
    Response,
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseReasoningItem,
)

from tests.support.responses import check_stream, events
from tests.support.served import ServedGateway

pytestmark = pytest.mark.slow

WEATHER: list[Any] = [
    {
        "type": "function",
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]


@pytest.fixture(scope="module")
def client(stub_gateway: ServedGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=stub_gateway.api_url, api_key="unused", max_retries=0)


def raw_stream(gw: ServedGateway, **body: Any) -> list[dict[str, Any]]:
    """The stream as sent: each `event:` line names its data's type, and each event is
    validated strictly by the SDK's models (an unknown type fails)."""
    with httpx.stream("POST", f"{gw.api_url}/responses", json={**body, "stream": True}, timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        data = r.read()
    assert b"[DONE]" not in data
    return events(data)


def test_non_stream_on_the_chat_stub(client: openai.OpenAI) -> None:
    raw = client.responses.with_raw_response.create(model="stub-chat", input="Name three colors.")
    out = raw.parse()
    assert raw.headers["x-mia-model"] == "stub-chat"
    assert out.id.startswith("resp_") and out.object == "response" and out.status == "completed"
    assert out.store is True and out.error is None and out.model == "stub-chat"  # stored, as OpenAI's default
    [message] = out.output
    assert isinstance(message, ResponseOutputMessage) and message.id.startswith("msg_")
    assert out.output_text and len(out.output_text.split()) == 24  # the stub's words
    assert out.usage is not None and out.usage.output_tokens == 24
    assert out.usage.total_tokens == out.usage.input_tokens + 24
    assert out.usage.input_tokens_details.cached_tokens == 0
    Response.model_validate(out.model_dump(), strict=False)


def test_the_output_cap_makes_an_incomplete_response(client: openai.OpenAI) -> None:
    out = client.responses.create(model="stub-chat", input="Hi", max_output_tokens=5, store=False)
    assert out.status == "incomplete" and out.incomplete_details is not None
    assert out.incomplete_details.reason == "max_output_tokens"
    assert len(out.output_text.split()) == 5 and out.max_output_tokens == 5


def test_harmony_stub_answers_with_reasoning_then_message(client: openai.OpenAI) -> None:
    out = client.responses.create(
        model="stub-harmony", input="Hello", instructions="Be brief.", reasoning={"effort": "high"}
    )
    reasoning, message = out.output
    assert isinstance(reasoning, ResponseReasoningItem) and reasoning.id.startswith("rs_")
    assert reasoning.content and reasoning.content[0].type == "reasoning_text" and reasoning.content[0].text
    assert isinstance(message, ResponseOutputMessage) and out.output_text
    assert out.usage is not None and out.usage.output_tokens_details.reasoning_tokens > 0
    assert out.instructions == "Be brief." and out.reasoning is not None and out.reasoning.effort == "high"


@pytest.mark.parametrize("model", ["stub-chat", "stub-harmony"])
def test_a_stream_is_every_event_openai_sends(client: openai.OpenAI, stub_gateway: ServedGateway, model: str) -> None:
    sent = raw_stream(stub_gateway, model=model, input="Tell me something.")
    final = check_stream(sent)
    assert sent[-1]["type"] == "response.completed" and final["status"] == "completed"
    assert [i["type"] for i in final["output"]] == (
        ["reasoning", "message"] if model == "stub-harmony" else ["message"]
    )
    # the SDK reads the same stream into its typed events
    typed = list(client.responses.create(model=model, input="Tell me something.", stream=True))
    assert [e.type for e in typed] == [e["type"] for e in sent]  # the stub is deterministic
    assert all(type(e).__module__.startswith("openai.types.responses") for e in typed)


def test_the_sdks_own_accumulation(client: openai.OpenAI) -> None:
    with client.responses.stream(model="stub-harmony", input="Hello") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.status == "completed" and final.output_text == "".join(deltas)
    assert [item.type for item in final.output] == ["reasoning", "message"]


def test_a_function_call_round_trip_on_harmony(client: openai.OpenAI, stub_gateway: ServedGateway) -> None:
    asked: dict[str, Any] = {
        "model": "stub-harmony",
        "tools": WEATHER,
        "tool_choice": {"type": "function", "name": "get_weather"},
    }
    first = client.responses.create(input="Weather in Paris?", **asked)
    [call] = [i for i in first.output if isinstance(i, ResponseFunctionToolCall)]
    assert call.id and call.id.startswith("fc_") and call.call_id.startswith("call_")
    assert (call.name, call.arguments, call.status) == ("get_weather", "{}", "completed")
    assert first.tools[0].type == "function" and first.tool_choice.type == "function"  # type: ignore[union-attr]
    # streamed: the same call, its arguments in deltas and in `output_item.done`
    sent = raw_stream(stub_gateway, input="Weather in Paris?", **asked)
    final = check_stream(sent)
    [done] = [e for e in sent if e["type"] == "response.function_call_arguments.done"]
    assert done["arguments"] == "{}" and final["output"][-1]["type"] == "function_call"
    # the call and its output sent back: the model answers
    items = [item.model_dump(exclude_none=True) for item in first.output]
    second = client.responses.create(
        model="stub-harmony",
        tools=WEATHER,
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            *items,
            {"type": "function_call_output", "call_id": call.call_id, "output": '{"sky": "sunny"}'},
        ],
    )
    assert second.status == "completed" and second.output_text
    assert not any(isinstance(i, ResponseFunctionToolCall) for i in second.output)


def test_hosted_tools_are_left_out_and_named(stub_gateway: ServedGateway) -> None:
    body = {
        "model": "stub-chat",
        "input": "hi",
        "store": False,
        "tools": [{"type": "web_search", "external_web_access": True}, {"type": "code_interpreter", "container": "x"}],
    }
    r = httpx.post(f"{stub_gateway.api_url}/responses", json=body, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["x-mia-ignored-tools"] == "web_search,code_interpreter"
    assert "x-mia-store" not in r.headers
    assert r.json()["tools"] == [] and r.json()["tool_choice"] == "none"
    rid = r.headers["x-request-id"]
    assert any("ToolsIgnored" in line and rid in line for line in stub_gateway.log().splitlines())
    scrape = httpx.get(f"{stub_gateway.base_url}/metrics", timeout=10).text
    counts = {t: _sample(scrape, "mia_hosted_tools_ignored_total", t) for t in ("web_search", "code_interpreter")}
    assert all(n >= 1 for n in counts.values()), counts


def _sample(scrape: str, name: str, tool: str) -> float:
    prefix = f'{name}{{tool="{tool}"}} '
    return sum(float(line.removeprefix(prefix)) for line in scrape.splitlines() if line.startswith(prefix))


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"input": 5}, 400, "input"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x/y.png"}]}]},
            400,
            "input[0].content[0].type",
        ),
        (
            {
                "input": [
                    {"role": "user", "content": "a"},
                    {
                        "role": "user",
                        "content": [{"type": "input_text", "text": "b"}, {"type": "input_file", "file_id": "f"}],
                    },
                ]
            },
            400,
            "input[1].content[1].type",
        ),
        ({"tools": [{"type": "shell_of_mystery"}]}, 400, "tools[0].type"),
        ({"max_output_tokens": 10**40}, 400, "max_output_tokens"),
        ({"max_output_tokens": "many"}, 400, "max_output_tokens"),
        ({"temperature": 9}, 400, "temperature"),
        ({"tool_choice": {"type": "function", "name": "nope"}}, 400, "tool_choice"),
        ({"background": True, "stream": True}, 400, "stream"),
        ({"background": True, "store": False}, 400, "store"),
        ({"previous_response_id": "resp_abc"}, 404, "previous_response_id"),
        ({"model": "no-such-model"}, 404, "model"),
    ],
)
def test_hostile_bodies_are_envelopes_never_5xx(
    stub_gateway: ServedGateway, body: dict[str, Any], status: int, param: str
) -> None:
    r = httpx.post(f"{stub_gateway.api_url}/responses", json={"model": "stub-chat", "input": "hi", **body}, timeout=30)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param or (param == "model" and error["code"] == "model_not_found"), error


def test_not_json_and_unknown_routes(stub_gateway: ServedGateway) -> None:
    r = httpx.post(f"{stub_gateway.api_url}/responses", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = httpx.get(f"{stub_gateway.api_url}/responses/resp_1/nothing/here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = httpx.get(f"{stub_gateway.api_url}/responses/resp_1")
    assert r.status_code == 404 and r.json()["error"]["code"] == "response_not_found"


@pytest.fixture(scope="module")
def real(default_gateway: ServedGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=default_gateway.api_url, api_key="unused", max_retries=0)


def test_real_smollm2_non_stream_and_stream(real: openai.OpenAI, default_gateway: ServedGateway) -> None:
    asked: dict[str, Any] = {
        "model": "smollm2-135m-instruct",
        "input": "Name three colors.",
        "max_output_tokens": 16,
        "temperature": 0,
    }
    out = real.responses.create(**asked)
    assert out.status in ("completed", "incomplete") and out.output_text
    assert out.usage is not None and 0 < out.usage.output_tokens <= 16 and out.temperature == 0
    sent = raw_stream(default_gateway, **asked)
    final = check_stream(sent)
    text = "".join(e["delta"] for e in sent if e["type"] == "response.output_text.delta")
    assert text == final["output"][0]["content"][0]["text"] == out.output_text  # greedy: the same answer
    assert final["usage"]["output_tokens"] == out.usage.output_tokens
    # logprobs, when `include` asks: one per token of the answer
    scored = real.responses.create(**asked, include=["message.output_text.logprobs"], top_logprobs=2)
    [part] = [p for item in scored.output if isinstance(item, ResponseOutputMessage) for p in item.content]
    assert part.type == "output_text" and part.logprobs is not None
    assert len(part.logprobs) == out.usage.output_tokens and len(part.logprobs[0].top_logprobs) == 2


def test_real_smollm2_reports_cached_prompt_tokens(real: openai.OpenAI) -> None:
    instructions = "You answer questions about a museum of old maps, tersely. " * 8
    usages = [
        real.responses.create(
            model="smollm2-135m-instruct", instructions=instructions, input=q, max_output_tokens=4, temperature=0
        ).usage
        for q in ("Which map is oldest?", "Which map is largest?")
    ]
    second = usages[1]
    assert second is not None  # the shared instructions came from the first one's cells
    assert second.input_tokens // 2 < second.input_tokens_details.cached_tokens < second.input_tokens


def test_a_codex_shaped_request_is_served(stub_gateway: ServedGateway) -> None:
    """What Codex CLI sends on every turn: function tools, a namespace tool, a hosted tool,
    `store: false`, encrypted reasoning asked for, a summary, a cache key, client metadata,
    and the earlier turn's items (easy messages, reasoning, a call and its output)."""
    shell = {"type": "function", "name": "exec_command", "strict": False, "parameters": {"type": "object"}}
    body = {
        "model": "stub-harmony",
        "instructions": "You are a coding agent.",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "sandbox: none"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "List files."}]},
            {
                "type": "reasoning",
                "summary": [],
                "content": [{"type": "reasoning_text", "text": "use ls"}],
                "encrypted_content": None,
            },
            {"type": "function_call", "call_id": "call_1", "name": "exec_command", "arguments": '{"cmd": "ls"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "README.md"},
        ],
        "tools": [
            shell,
            {
                "type": "namespace",
                "name": "multi_agent_v1",
                "description": "agents",
                "tools": [{**shell, "name": "spawn"}],
            },
            {"type": "web_search", "external_web_access": False},
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "0f0e",
        "client_metadata": {"originator": "codex_exec"},
    }
    with httpx.stream("POST", f"{stub_gateway.api_url}/responses", json=body, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["x-mia-ignored-tools"] == "web_search" and "x-mia-store" not in r.headers
        data = r.read()
    final = check_stream(events(data))
    assert final["status"] == "completed" and final["prompt_cache_key"] == "0f0e"
    assert [t["name"] for t in final["tools"]] == ["exec_command", "multi_agent_v1"]


def test_a_namespaced_call_comes_back_with_its_namespace(client: openai.OpenAI) -> None:
    agents = {"type": "namespace", "name": "agents", "description": "Sub-agents.", "tools": [WEATHER[0]]}
    out = client.responses.create(
        model="stub-harmony",
        input="Weather?",
        tools=[agents],  # type: ignore[list-item]
        tool_choice={"type": "function", "name": "agents.get_weather"},
    )
    [call] = [i for i in out.output if isinstance(i, ResponseFunctionToolCall)]
    assert (call.namespace, call.name, call.arguments) == ("agents", "get_weather", "{}")
