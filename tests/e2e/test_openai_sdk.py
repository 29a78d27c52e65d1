"""The unmodified OpenAI SDK against a `mia-gateway serve` process on loopback."""

from __future__ import annotations

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
    assert set(models) == {"stub-chat", "stub-harmony"}
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
