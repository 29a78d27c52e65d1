"""The Responses route under settings of its own (hosted tools refused instead of left out),
and the refusals it names in its own fields."""

from __future__ import annotations

from collections.abc import Callable

from tests.support.app_client import asgi
from tests.support.configs import STUB_MODELS
from tests.support.harness import Harness

HOSTED = [{"type": "function", "name": "f", "parameters": {"type": "object"}}, {"type": "web_search"}]


async def test_refused_hosted_tools_are_a_400_naming_the_tool(make_app_harness: Callable[..., Harness]) -> None:
    h = make_app_harness(STUB_MODELS.replace("[server]\n", '[server]\nhosted_tools = "refuse"\n', 1))
    async with asgi(h) as client:
        r = await client.post("/v1/responses", json={"model": "stub-harmony", "input": "hi", "tools": HOSTED})
    assert r.status_code == 400
    err = r.json()["error"]
    assert (err["param"], err["code"], err["type"]) == (
        "tools[1].type",
        "unsupported_parameter",
        "invalid_request_error",
    )
    assert "web_search" in err["message"] and "hosted_tools" in err["message"]
    assert not h.events or all(type(e).__name__ != "GenerationStarted" for e in h.events)


async def test_by_default_they_are_left_out_and_the_request_is_served(make_app_harness: Callable[..., Harness]) -> None:
    h = make_app_harness(STUB_MODELS)
    async with asgi(h) as client:
        r = await client.post("/v1/responses", json={"model": "stub-harmony", "input": "hi", "tools": HOSTED})
    assert r.status_code == 200, r.text
    assert r.headers["x-mia-ignored-tools"] == "web_search"
    [ignored] = [e for e in h.events if type(e).__name__ == "ToolsIgnored"]
    assert ignored.tools == ["web_search"] and ignored.request_id == r.headers["x-request-id"]


async def test_a_prompt_past_the_context_names_input_on_the_responses_wire(
    make_app_harness: Callable[..., Harness],
) -> None:
    # the chat wire names `messages`; the same refusal here names the field the client sent
    h = make_app_harness(STUB_MODELS)
    long_input = "word " * 5000  # the stub counts words; its context is 2,048
    async with asgi(h) as client:
        chat = await client.post(
            "/v1/chat/completions", json={"model": "stub-chat", "messages": [{"role": "user", "content": long_input}]}
        )
        responses = await client.post("/v1/responses", json={"model": "stub-chat", "input": long_input})
    assert chat.status_code == responses.status_code == 400, (chat.text, responses.text)
    assert (chat.json()["error"]["code"], chat.json()["error"]["param"]) == ("context_length_exceeded", "messages")
    assert (responses.json()["error"]["code"], responses.json()["error"]["param"]) == (
        "context_length_exceeded",
        "input",
    )
