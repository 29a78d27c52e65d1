"""Models served by upstreams, through the app: upstream errors in OpenAI's envelope,
fallback hops in the response headers, model cards that show each upstream, metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx

from app.metrics import install_metrics
from pipelines.errors import UpstreamError
from pipelines.events import (
    FallbackTriggered,
    GenerationCancelled,
    GenerationCompleted,
    GenerationStarted,
    ModelLoaded,
    ModelLoadFailed,
)
from pipelines.upstream import UpstreamStateChanged
from tests.support.app_client import asgi
from tests.support.harness import Harness
from tests.support.upstream import (
    BEFORE_FIRST_TOKEN,
    CHAIN,
    CHAT,
    KINDS,
    UP1,
    UP2,
    answer,
    body_of,
    dies_after,
    fail,
    pool_of,
    remote_model,
    routes,
)

HarnessFactory = Callable[..., Harness]


@pytest.mark.parametrize(
    ("status", "body", "expect_status", "expect_code"),
    [
        (
            400,
            {"error": {"message": "bad tools", "type": "invalid_request_error", "param": "tools", "code": "x"}},
            400,
            "x",
        ),
        (422, {"detail": [{"loc": ["body", "messages"], "msg": "field required"}]}, 400, None),
        (401, {"error": {"message": "invalid key"}}, 502, "upstream_error"),
        (403, {"error": {"message": "forbidden"}}, 502, "upstream_error"),
        (404, {"error": {"message": "model not found"}}, 502, "upstream_error"),
        (500, {"error": {"message": "CUDA out of memory"}}, 502, "upstream_error"),
        (503, "<html>Service Unavailable</html>", 502, "upstream_error"),
        (429, {"error": {"message": "slow down"}}, 429, "rate_limit_exceeded"),
    ],
)
async def test_upstream_errors_reach_the_client_in_openais_envelope(
    make_app_harness: HarnessFactory,
    respx_mock: respx.MockRouter,
    status: int,
    body: Any,
    expect_status: int,
    expect_code: str | None,
) -> None:
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    respx_mock.post(f"{UP1}/chat/completions").mock(return_value=httpx.Response(status, content=content))
    h = make_app_harness(remote_model())
    async with asgi(h) as client:
        r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == expect_status
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] == expect_code
    if status == 400:
        assert (err["message"], err["param"], err["type"]) == ("bad tools", "tools", "invalid_request_error")
    elif status == 422:
        assert "field required" in err["message"]
    elif status == 503:
        assert "Service Unavailable" in err["message"]  # a body that is not JSON is quoted as text
    else:
        assert err["type"] == ("invalid_request_error" if expect_status < 500 else "server_error")


async def test_non_stream_and_stream_through_the_app(
    make_app_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(f"{UP1}/chat/completions").mock(side_effect=lambda _: answer("Hi", " you"))
    h = make_app_harness(remote_model())
    async with asgi(h) as client:
        r = await client.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["model"] == "remote" and out["choices"][0]["message"]["content"] == "Hi you"
        assert out["usage"]["completion_tokens"] == 2 and "x-mia-fallback" not in r.headers
        r = await client.post(
            "/v1/chat/completions", json={**CHAT, "stream": True, "stream_options": {"include_usage": True}}
        )
    events = [line.removeprefix("data: ") for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "Hi you"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["prompt_tokens"] == 7


async def test_the_model_card_shows_each_upstream_without_credentials(
    make_app_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    h = make_app_harness(remote_model(upstreams=("http://user:secret@up1.test:8001/v1", UP2)))
    async with asgi(h) as client:
        card = (await client.get("/v1/models/remote")).json()
    assert card["provider"] == "openai_http" and card["stub"] is False and card["pipeline"] == "lightweight"
    ups = card["upstreams"]
    assert [u["url"] for u in ups] == ["http://up1.test:8001/v1", UP2]
    assert "secret" not in json.dumps(card)
    assert {(u["state"], u["in_flight"], u["consecutive_failures"]) for u in ups} == {("healthy", 0, 0)}


async def test_a_missing_api_key_variable_serves_the_stub_and_says_why(
    make_app_harness: HarnessFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    toml = remote_model().replace('model = "there-0" }', 'model = "there-0", api_key_env = "NO_SUCH_KEY_VAR" }')
    h = make_app_harness(toml)
    entry = h.gateway.manager.get("remote")
    assert entry is not None
    # before any load, the model card already says what a load would find
    async with asgi(h) as client:
        card = (await client.get("/v1/models/remote")).json()
    assert (card["stub"], card["status"]) == (True, "unloaded")
    assert card["stub_reason"] == "missing_api_key: environment variable NO_SUCH_KEY_VAR is not set"
    await h.gateway.manager.ensure_loaded(entry)
    (failed,) = h.of(ModelLoadFailed)
    assert failed.reason == "missing_api_key" and "NO_SUCH_KEY_VAR" in failed.detail
    (loaded,) = h.of(ModelLoaded)
    assert loaded.stub is True


async def test_metrics_count_upstream_requests_by_result(
    make_app_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(f"{UP1}/chat/completions").mock(side_effect=[answer("x"), httpx.Response(400, json={})])
    h = make_app_harness(remote_model())
    install_metrics(h.gateway.registry, h.gateway.bus, h.gateway.settings.models)
    await h.run(h.request("remote"))
    with pytest.raises(UpstreamError):
        await h.start(h.request("remote"))
    sample = h.gateway.registry.get_sample_value
    labels = {"model": "remote", "upstream": "up1.test:80"}
    assert sample("mia_upstream_requests_total", {**labels, "result": "ok"}) == 1
    assert sample("mia_upstream_requests_total", {**labels, "result": "client_error"}) == 1
    assert sample("mia_upstream_healthy", labels) == 1
    assert sample("mia_upstream_ejections_total", labels) == 0


async def test_several_choices_are_one_upstream_request_each(
    make_app_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    words = iter([("red",), ("blue", " sky")])
    route = respx_mock.post(f"{UP1}/chat/completions").mock(side_effect=lambda _: answer(*next(words)))
    h = make_app_harness(remote_model())
    async with asgi(h) as client:
        r = await client.post("/v1/chat/completions", json={**CHAT, "n": 2, "seed": 5})
    assert r.status_code == 200, r.text
    out = r.json()
    assert sorted(c["message"]["content"] for c in out["choices"]) == ["blue sky", "red"]
    assert [c["index"] for c in out["choices"]] == [0, 1]
    assert out["usage"]["completion_tokens"] == 3 and out["usage"]["prompt_tokens"] == 7
    sent = [body_of(route, i) for i in range(2)]
    assert sorted(b["seed"] for b in sent) == [5, 6]  # each choice its own seed
    assert all("n" not in b for b in sent)


@pytest.mark.parametrize("kind", KINDS)
async def test_when_the_whole_chain_fails_the_client_gets_the_last_error(
    make_app_harness: HarnessFactory, respx_mock: respx.MockRouter, kind: str
) -> None:
    for route in routes(respx_mock):
        fail(route, kind)
    h = make_app_harness(CHAIN)
    async with asgi(h) as client:
        r = await client.post("/v1/chat/completions", json={**CHAT, "model": "a"})
    status = BEFORE_FIRST_TOKEN[kind][2]
    assert r.status_code == status
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] == {429: "rate_limit_exceeded", 502: "upstream_error", 504: "upstream_timeout"}[status]
    assert "'b'" in err["message"]  # the last attempt's error
    assert not h.of(GenerationStarted)


async def test_the_response_names_the_serving_model_and_the_hops(
    make_app_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    up1, up2, up3 = routes(respx_mock)
    up1.mock(side_effect=httpx.ConnectError("refused"))
    up2.mock(return_value=httpx.Response(503))
    up3.mock(side_effect=lambda _: answer("served", " by", " b"))
    h = make_app_harness(CHAIN)
    async with asgi(h) as client:
        r = await client.post("/v1/chat/completions", json={**CHAT, "model": "a"})
        assert r.status_code == 200
        assert r.json()["model"] == "b"
        assert r.headers["x-mia-model"] == "b"
        assert r.headers["x-mia-fallback"] == "a->a:connect_error,a->b:server_error"
        r = await client.post("/v1/chat/completions", json={**CHAT, "model": "a", "stream": True})
    assert r.status_code == 200
    # this time the upstreams were tried the other way round (they are taken in turn)
    assert r.headers["x-mia-fallback"] == "a->a:server_error,a->b:connect_error"
    chunks = [json.loads(x[6:]) for x in r.text.splitlines() if x.startswith("data: {")]
    assert {c["model"] for c in chunks} == {"b"}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "served by b"


async def test_mid_stream_death_through_the_app(make_app_harness: HarnessFactory, respx_mock: respx.MockRouter) -> None:
    up1, up2, _ = routes(respx_mock)
    up1.mock(side_effect=lambda _: dies_after("Hello"))
    up2.mock(side_effect=lambda _: dies_after("Hi"))
    h = make_app_harness(CHAIN)
    async with asgi(h) as client:
        r = await client.post("/v1/chat/completions", json={**CHAT, "model": "a", "stream": True})
    assert r.status_code == 200  # the status went out with the first byte
    events = [x[6:] for x in r.text.splitlines() if x.startswith("data: ")]
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "upstream_error" and error["type"] == "server_error"
    contents = [json.loads(e)["choices"][0]["delta"].get("content") for e in events[:-2]]
    assert contents in (["", "Hello"], ["", "Hi"])
    (cancelled,) = h.of(GenerationCancelled)
    assert cancelled.reason == "upstream_error"
    assert len(h.of(GenerationStarted)) == 1 and not h.of(FallbackTriggered)


async def test_a_non_stream_request_moves_on_when_an_upstream_dies_part_way(
    make_app_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    up1, up2, up3 = routes(respx_mock)
    up1.mock(side_effect=lambda _: dies_after("Hello"))
    up2.mock(side_effect=lambda _: dies_after("Hi", " there"))
    up3.mock(side_effect=lambda _: answer("All", " of", " it"))
    h = make_app_harness(CHAIN)
    async with asgi(h) as client:
        r = await client.post("/v1/chat/completions", json={**CHAT, "model": "a"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"] == "b" and out["choices"][0]["message"]["content"] == "All of it"
    assert out["usage"]["completion_tokens"] == 3  # the served attempt's, not the sum
    assert r.headers["x-mia-model"] == "b"
    assert r.headers["x-mia-fallback"] == "a->a:network_error,a->b:network_error"
    # each attempt is a generation of its own, with its one terminal event
    assert [e.model_id for e in h.of(GenerationStarted)] == ["a", "a", "b"]
    assert [(e.model_id, e.reason) for e in h.of(GenerationCancelled)] == [("a", "upstream_error")] * 2
    assert [e.model_id for e in h.of(GenerationCompleted)] == ["b"]
    assert [u.in_flight for u in pool_of(h, "a").upstreams] == [0, 0]
    assert h.gateway.service.live == 0


async def test_consecutive_failures_eject_an_upstream_for_a_cool_down(
    make_app_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    up1, up2, _ = routes(respx_mock)
    up1.mock(side_effect=httpx.ConnectError("refused"))
    up2.mock(side_effect=lambda _: answer("ok"))
    h = make_app_harness(remote_model("a", (UP1, UP2), eject_after=2, eject_seconds=0.3))
    install_metrics(h.gateway.registry, h.gateway.bus, h.gateway.settings.models)
    sample = h.gateway.registry.get_sample_value
    labels = {"model": "a", "upstream": "up1.test:80"}
    for _ in range(6):
        gen, _ = await h.run(h.request("a"))
        assert gen.result is not None and gen.result.content == "ok"  # no request lost
    # tries alternate, so up1 was first for requests 1 and 3: ejected at its second failure
    assert up1.call_count == 2
    (ejected,) = h.of(UpstreamStateChanged)
    assert (ejected.upstream, ejected.state, ejected.reason) == ("up1.test:80", "ejected", "connect_error")
    assert sample("mia_upstream_healthy", labels) == 0
    assert sample("mia_upstream_ejections_total", labels) == 1
    assert sample("mia_upstream_requests_total", {**labels, "result": "connect_error"}) == 2
    assert sample("mia_fallbacks_total", {"from_model": "a", "to_model": "a", "reason": "connect_error"}) == 2
    snap = pool_of(h, "a").upstreams[0].snapshot()
    assert (snap["state"], snap["consecutive_failures"]) == ("ejected", 2)

    await asyncio.sleep(0.4)  # the cool-down ends: back in, one failure from the next ejection
    assert [e.state for e in h.of(UpstreamStateChanged)] == ["ejected", "healthy"]
    assert sample("mia_upstream_healthy", labels) == 1
    for _ in range(2):
        await h.run(h.request("a"))
    assert up1.call_count == 3
    assert [e.state for e in h.of(UpstreamStateChanged)] == ["ejected", "healthy", "ejected"]
    assert sample("mia_upstream_ejections_total", labels) == 2
