"""The unmodified OpenAI SDK against a `mia-gateway serve` process on loopback."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.support.served import ServedGateway

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(stub_gateway: ServedGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=stub_gateway.api_url, api_key="unused", max_retries=0)


def test_lists_models_with_the_stub_flag(client: openai.OpenAI) -> None:
    models = {m.id: m for m in client.models.list()}
    assert set(models) == {"stub-chat", "stub-harmony", "stub-embed"}
    card = models["stub-harmony"]
    assert card.model_extra is not None
    assert card.model_extra["stub"] is True
    assert card.model_extra["stub_reason"] == "configured"
    assert card.model_extra["pipeline"] == "primary"
    assert card.model_extra["status"] == "loaded"
    assert client.models.retrieve("stub-chat-alias").id == "stub-chat"


def test_non_stream_completion(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="stub-chat", messages=[{"role": "user", "content": "Name three colors."}], max_tokens=10
    )
    choice = out.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content and len(choice.message.content.split()) == 10
    assert choice.finish_reason == "length"
    assert out.usage is not None and out.usage.completion_tokens == 10
    assert out.model == "stub-chat"
    assert out.id.startswith("chatcmpl-")


def test_harmony_stub_splits_reasoning_from_content(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(model="stub-harmony", messages=[{"role": "user", "content": "Hello"}])
    msg = out.choices[0].message
    assert msg.content
    extra = msg.model_extra or {}
    assert extra["reasoning_content"] and extra["reasoning"] == extra["reasoning_content"]
    assert out.choices[0].finish_reason == "stop"
    assert out.usage is not None and out.usage.completion_tokens_details is not None
    assert out.usage.completion_tokens_details.reasoning_tokens > 0


WEATHER: list[openai.types.chat.ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_harmony_stub_answers_a_forced_tool_call_with_a_call(client: openai.OpenAI, choice: Any) -> None:
    asked = {"model": "stub-harmony", "messages": [{"role": "user", "content": "Weather?"}], "tools": WEATHER}
    out = client.chat.completions.create(**asked, tool_choice=choice)
    assert out.choices[0].finish_reason == "tool_calls"
    [call] = out.choices[0].message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert (call.function.name, call.function.arguments) == ("get_weather", "{}")
    # streamed: the same call, in tool_call deltas
    chunks = list(client.chat.completions.create(**asked, tool_choice=choice, stream=True))
    deltas = [t for c in chunks if c.choices for t in (c.choices[0].delta.tool_calls or [])]
    assert deltas and deltas[0].function is not None and deltas[0].function.name == "get_weather"
    assert (deltas[0].index, deltas[0].type) == (0, "function") and (deltas[0].id or "").startswith("call_")
    assert "".join((t.function.arguments or "") for t in deltas if t.function) == "{}"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_stream_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="stub-harmony",
        messages=[{"role": "user", "content": "Hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks if c.choices
    )
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    # the streamed text is the same as the non-stream answer to the same request
    full = client.chat.completions.create(model="stub-harmony", messages=[{"role": "user", "content": "Hello"}])
    assert content == full.choices[0].message.content
    assert reasoning == (full.choices[0].message.model_extra or {})["reasoning_content"]
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens  # type: ignore[union-attr]


def test_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    body = info.value.body
    assert isinstance(body, dict)
    assert body["code"] == "model_not_found" and body["param"] == "model"


def test_bad_value_names_the_param(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="stub-chat", messages=[{"role": "user", "content": "x"}], temperature=7)
    body = info.value.body
    assert isinstance(body, dict) and body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="stub-chat",
            messages=[{"role": "user", "content": "x"}, {"role": "wizard", "content": "y"}],  # type: ignore[misc,list-item]
        )
    body = info.value.body
    assert isinstance(body, dict) and body["param"] == "messages[1].role"


def test_every_response_carries_a_request_id(stub_gateway: ServedGateway) -> None:
    r = httpx.get(f"{stub_gateway.base_url}/v1/models", headers={"x-request-id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = httpx.get(f"{stub_gateway.base_url}/nope")
    assert r.status_code == 404 and r.headers["x-request-id"].startswith("req_")
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_several_choices_non_stream(client: openai.OpenAI) -> None:
    msgs: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "Name three colors."}]
    out = client.chat.completions.create(model="stub-chat", messages=msgs, max_tokens=8, n=3, seed=11)
    assert [c.index for c in out.choices] == [0, 1, 2]
    texts = [c.message.content for c in out.choices]
    assert len(set(texts)) == 3  # each choice has its own seed: 11, 12, 13
    for i, text in enumerate(texts):
        one = client.chat.completions.create(model="stub-chat", messages=msgs, max_tokens=8, seed=11 + i)
        assert one.choices[0].message.content == text
    assert out.usage is not None and out.usage.completion_tokens == 3 * 8
    assert out.usage.total_tokens == out.usage.prompt_tokens + 24


def test_several_choices_stream_by_index(client: openai.OpenAI) -> None:
    msgs: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "Hello"}]
    stream = client.chat.completions.create(
        model="stub-harmony", messages=msgs, n=2, seed=5, stream=True, stream_options={"include_usage": True}
    )
    content: dict[int, str] = {0: "", 1: ""}
    roles: dict[int, str | None] = {}
    finish: dict[int, str | None] = {}
    for chunk in stream:
        for c in chunk.choices:
            roles.setdefault(c.index, c.delta.role)
            content[c.index] += c.delta.content or ""
            if c.finish_reason:
                finish[c.index] = c.finish_reason
    full = client.chat.completions.create(model="stub-harmony", messages=msgs, n=2, seed=5)
    assert roles == {0: "assistant", 1: "assistant"}
    assert finish == {0: "stop", 1: "stop"}
    assert [content[0], content[1]] == [c.message.content for c in full.choices]
    assert chunk.usage is not None and full.usage is not None
    assert chunk.usage.completion_tokens == full.usage.completion_tokens


def test_too_many_choices_is_a_clear_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="stub-chat", messages=[{"role": "user", "content": "x"}], n=17)
    body = info.value.body
    assert isinstance(body, dict) and body["param"] == "n"


def test_embeddings_create_in_both_encodings(client: openai.OpenAI) -> None:
    # the SDK asks for base64 by default and decodes it; float is asked explicitly
    b64 = client.embeddings.create(model="stub-embed", input=["first text", "second"])
    floats = client.embeddings.create(model="stub-embed", input=["first text", "second"], encoding_format="float")
    assert b64.model == "stub-embed" and [d.index for d in b64.data] == [0, 1]
    assert b64.usage.prompt_tokens == 3 and b64.usage.total_tokens == 3
    for a, b in zip(b64.data, floats.data, strict=True):
        assert len(a.embedding) == 8
        assert max(abs(x - y) for x, y in zip(a.embedding, b.embedding, strict=True)) < 1e-7
    one = client.embeddings.create(model="stub-embed", input=[1, 2, 3], encoding_format="float")
    assert len(one.data) == 1 and one.usage.prompt_tokens == 3
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="stub-embed", input="x", dimensions=4)
    assert err.value.code == "unsupported_parameter" and err.value.param == "dimensions"
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="stub-chat", input="x")
    assert err.value.code == "unsupported_model"
