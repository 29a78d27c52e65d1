"""Legacy completions of a model served by upstreams, through the app: the upstream's own
`/completions` is asked (body checked), its stream read, its failures told in OpenAI's
envelope. The upstreams are respx answers (the outside world), nothing of ours is mocked."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx

from tests.support.app_client import asgi
from tests.support.harness import Harness
from tests.support.upstream import SSE, UP1, BrokenStream, body_of, remote_model, sse_bytes

HarnessFactory = Callable[..., Harness]
COMPLETIONS = f"{UP1}/completions"


def legacy(text: str, *, finish: str | None = None, logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": finish, "logprobs": logprobs}
    return {"id": "cmpl-up", "object": "text_completion", "model": "there-0", "choices": [choice]}


def answer(*words: str, finish: str = "length") -> httpx.Response:
    events: list[dict[str, Any]] = [
        legacy(w, logprobs={"tokens": [w], "token_logprobs": [-0.5], "top_logprobs": [{w: -0.5, "x": -2.0}]})
        for w in words
    ]
    events.append(legacy("", finish=finish))
    events.append({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": len(words), "total_tokens": 9}})
    return httpx.Response(200, headers=SSE, content=sse_bytes(*events))


async def test_the_upstream_is_asked_on_its_completions(
    make_app_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.post(COMPLETIONS).mock(side_effect=lambda _: answer("Hi", " you"))
    h = make_app_harness(remote_model())
    async with asgi(h) as client:
        body = {"model": "remote", "prompt": [1, 2, 3], "max_tokens": 5, "logprobs": 1, "stop": "\n", "temperature": 0}
        r = await client.post("/v1/completions", json=body)
    assert r.status_code == 200, r.text
    sent = body_of(route)
    assert (sent["model"], sent["prompt"], sent["max_tokens"], sent["logprobs"], sent["stop"]) == (
        "there-0",
        [1, 2, 3],
        5,
        1,
        ["\n"],
    )
    assert sent["stream"] is True and "echo" not in sent and "messages" not in sent
    [choice] = r.json()["choices"]
    assert (choice["text"], choice["finish_reason"]) == ("Hi you", "length")
    assert choice["logprobs"]["tokens"] == ["Hi", " you"]
    assert choice["logprobs"]["top_logprobs"][0] == {"Hi": -0.5, "x": -2.0}
    assert choice["logprobs"]["text_offset"] == [0, 2]
    assert r.json()["usage"]["completion_tokens"] == 2


@pytest.mark.parametrize(
    ("upstream", "status", "code"),
    [
        (
            httpx.Response(400, json={"error": {"message": "no", "param": "prompt", "code": "bad_prompt"}}),
            400,
            "bad_prompt",
        ),
        (httpx.Response(500, json={"error": {"message": "boom"}}), 502, "upstream_error"),
        (httpx.ConnectError("refused"), 502, "upstream_error"),
    ],
)
async def test_upstream_failures_in_openais_envelope(
    make_app_harness: HarnessFactory, respx_mock: respx.MockRouter, upstream: Any, status: int, code: str
) -> None:
    route = respx_mock.post(COMPLETIONS)
    if isinstance(upstream, Exception):
        route.mock(side_effect=upstream)
    else:
        route.mock(return_value=upstream)
    h = make_app_harness(remote_model())
    async with asgi(h) as client:
        r = await client.post("/v1/completions", json={"model": "remote", "prompt": "x"})
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


async def test_a_stream_cut_short_ends_in_an_error_event(
    make_app_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    parts = [sse_bytes(legacy(w), done=False) for w in ("a", "b")]
    respx_mock.post(COMPLETIONS).mock(
        return_value=httpx.Response(200, headers=SSE, stream=BrokenStream(parts, httpx.ReadError("connection reset")))
    )
    h = make_app_harness(remote_model())
    async with asgi(h) as client:
        r = await client.post("/v1/completions", json={"model": "remote", "prompt": "x", "stream": True})
    assert r.status_code == 200
    events = [line.removeprefix("data: ") for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert "".join(json.loads(e)["choices"][0]["text"] for e in events[:-2]) == "ab"
    assert json.loads(events[-2])["error"]["code"] == "upstream_error"


async def test_echo_with_logprobs_is_refused_before_asking(
    make_app_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.post(COMPLETIONS).mock(side_effect=lambda _: answer("Hi"))
    h = make_app_harness(remote_model())
    async with asgi(h) as client:
        for body in ({"echo": True, "logprobs": 0}, {"echo": True, "prompt": [1, 2]}):
            r = await client.post("/v1/completions", json={"model": "remote", "prompt": "x", **body})
            assert r.status_code == 400
            assert (r.json()["error"]["param"], r.json()["error"]["code"]) == ("echo", "unsupported_parameter")
        r = await client.post("/v1/completions", json={"model": "remote", "prompt": "Say", "echo": True})
    assert r.json()["choices"][0]["text"] == "SayHi"
    assert route.call_count == 1


async def test_an_upstream_model_has_no_tokenizer_here(make_app_harness: HarnessFactory) -> None:
    h = make_app_harness(remote_model())
    async with asgi(h) as client:
        r = await client.post("/tokenize", json={"prompt": "x"})  # the first model: `remote`
        info = await client.get("/tokenizer_info", params={"model": "remote"})
    for answer_ in (r, info):
        assert answer_.status_code == 400
        assert (answer_.json()["error"]["param"], answer_.json()["error"]["code"]) == ("model", "unsupported_parameter")
