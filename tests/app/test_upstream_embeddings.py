"""Embeddings of models served by upstreams: relayed to the upstream's `/embeddings`
(a real loopback server), failures in OpenAI's envelope (respx), the next upstream tried
after a retryable failure."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import respx

from tests.support.app_client import asgi
from tests.support.harness import Harness
from tests.support.loopback_upstream import TinyUpstream, tiny_upstream
from tests.support.upstream import STUB_CHAT, UP1, UP2, remote_model

HarnessFactory = Callable[..., Harness]


@pytest.fixture
def up() -> Iterator[TinyUpstream]:
    with tiny_upstream() as server:
        yield server


def embedding_model(base_url: str, remote: str, model_id: str = "remote-embed") -> str:
    return (
        f'[[models]]\nid = "{model_id}"\nprovider = "openai_http"\nembedding = true\nprobe_seconds = 0\n'
        f'upstreams = [{{ base_url = "{base_url}", model = "{remote}" }}]\n'
    )


async def post(h: Harness, body: dict[str, Any]) -> httpx.Response:
    async with asgi(h) as client:
        return await client.post("/v1/embeddings", json=body)


async def test_embeddings_are_relayed_to_the_upstream(make_app_harness: HarnessFactory, up: TinyUpstream) -> None:
    h = make_app_harness(embedding_model(up.base_url, "mini"))
    r = await post(h, {"model": "remote-embed", "input": ["hello", "hi"], "user": "u1"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "remote-embed" and r.headers["x-mia-model"] == "remote-embed"
    assert [d["embedding"] for d in body["data"]] == [[5.0, 0.0, 1.0], [2.0, 1.0, 1.0]]
    assert body["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    # the upstream is always asked for floats; the client's base64 is made here
    r = await post(h, {"model": "remote-embed", "input": [[1, 2, 3]], "encoding_format": "base64"})
    raw = base64.b64decode(r.json()["data"][0]["embedding"])
    assert struct.unpack("<3f", raw) == (3.0, 0.0, 1.0)
    assert up.embedding_bodies == [
        {"model": "mini", "input": ["hello", "hi"], "encoding_format": "float"},
        {"model": "mini", "input": [[1, 2, 3]], "encoding_format": "float"},
    ]


async def test_dimensions_is_the_upstreams_to_accept_or_refuse(
    make_app_harness: HarnessFactory, up: TinyUpstream
) -> None:
    h = make_app_harness(embedding_model(up.base_url, "mini") + embedding_model(up.base_url, "matryoshka", "m2"))
    r = await post(h, {"model": "remote-embed", "input": "x", "dimensions": 2})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "dimensions" and "does not support" in r.json()["error"]["message"]
    r = await post(h, {"model": "m2", "input": "x", "dimensions": 5})
    assert r.status_code == 200 and r.json()["data"][0]["embedding"] == [1.0, 0.0, 1.0, 0.0, 0.0]


async def test_a_failing_upstream_is_followed_by_the_next(make_app_harness: HarnessFactory, up: TinyUpstream) -> None:
    toml = (
        '[[models]]\nid = "remote-embed"\nprovider = "openai_http"\nembedding = true\nprobe_seconds = 0\n'
        f'upstreams = [{{ base_url = "{up.base_url}", model = "fail" }}, {{ base_url = "{up.base_url}", model = "mini" }}]\n'
    )
    h = make_app_harness(toml)
    for _ in range(2):  # the pool takes turns: one of these starts on the failing upstream
        r = await post(h, {"model": "remote-embed", "input": "abc"})
        assert r.status_code == 200 and r.json()["data"][0]["embedding"] == [3.0, 0.0, 1.0]
    assert up.requests.count("fail") >= 1


async def test_a_chat_upstream_model_refuses_embeddings(make_app_harness: HarnessFactory, up: TinyUpstream) -> None:
    h = make_app_harness(remote_model("remote-chat", [up.base_url]) + STUB_CHAT)
    r = await post(h, {"model": "remote-chat", "input": "x"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_model"
    assert up.requests == []  # refused before any upstream was asked


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [
        (httpx.Response(500, json={"error": {"message": "boom"}}), 502, "upstream_error"),
        (httpx.Response(429, json={"error": {"message": "slow down"}}), 429, "rate_limit_exceeded"),
        (httpx.Response(401, json={"error": {"message": "bad key"}}), 502, "upstream_error"),
        (httpx.Response(200, json={"data": [], "usage": {"prompt_tokens": 1}}), 502, "upstream_error"),
        (httpx.Response(200, content=b"not json"), 502, "upstream_error"),
        (httpx.Response(200, json={"data": [{"embedding": "!!", "index": 0}]}), 502, "upstream_error"),
        (httpx.ConnectError("refused"), 502, "upstream_error"),
        (httpx.ReadTimeout("slow"), 504, "upstream_timeout"),
    ],
)
async def test_upstream_failures_reach_the_client_in_openais_envelope(
    make_app_harness: HarnessFactory,
    respx_mock: respx.MockRouter,
    answer: httpx.Response | Exception,
    status: int,
    code: str,
) -> None:
    route = respx_mock.post(f"{UP1}/embeddings")
    if isinstance(answer, Exception):
        route.mock(side_effect=answer)
    else:
        route.mock(return_value=answer)
    h = make_app_harness(embedding_model(UP1, "there"))
    r = await post(h, {"model": "remote-embed", "input": "x"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["code"] == code


async def test_the_upstreams_base64_is_read_too(make_app_harness: HarnessFactory, respx_mock: respx.MockRouter) -> None:
    vector = base64.b64encode(struct.pack("<2f", 0.5, -0.25)).decode()
    respx_mock.post(f"{UP2}/embeddings").mock(
        return_value=httpx.Response(200, json={"data": [{"embedding": vector, "index": 0}]})
    )
    h = make_app_harness(embedding_model(UP2, "there"))
    r = await post(h, {"model": "remote-embed", "input": "x"})
    assert r.status_code == 200 and r.json()["data"][0]["embedding"] == [0.5, -0.25]
    sent = json.loads(respx_mock.calls.last.request.content)
    assert sent == {"model": "there", "input": ["x"], "encoding_format": "float"}
