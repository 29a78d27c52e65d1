"""The `openai_http` provider against respx-mocked upstreams: what it sends, how each
kind of stream comes back (content, reasoning under either name, tool calls, usage,
logprobs), how upstream errors reach the client, in-process and through the app."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import httpx
import msgspec
import pytest
import respx

from app.factory import create_app
from app.metrics import install_metrics
from pipelines.errors import UpstreamError
from pipelines.events import GenerationCancelled, GenerationCompleted, ModelLoaded, ModelLoadFailed, ModelRouted
from pipelines.providers.openai_http import OpenAIHTTPProvider
from pipelines.types import DeltaKind, Open, ResponseFormat, SamplingOverrides, Text, Tool
from pipelines.upstream import UpstreamFailure
from pipelines.upstream.wire import ChunkReader, SSEDecoder
from tests.pipelines.conftest import Harness

UP1 = "http://up1.test/v1"
UP2 = "http://up2.test/v1"
UP3 = "http://up3.test/v1"
SSE = {"content-type": "text/event-stream"}

HarnessFactory = Callable[..., Harness]


# -- helpers (test_fallback.py uses them too) -------------------------------------


def remote_model(model_id: str = "remote", upstreams: Iterable[str] = (UP1,), **extra: Any) -> str:
    """A `[[models]]` table for an `openai_http` model (no probes unless asked)."""
    ups = ", ".join(f'{{ base_url = "{u}", model = "there-{i}" }}' for i, u in enumerate(upstreams))
    fields: dict[str, Any] = {"max_output_tokens": 64, "probe_seconds": 0, **extra}
    lines = [
        "[[models]]",
        f'id = "{model_id}"',
        'provider = "openai_http"',
        'format = "chat"',
        f"upstreams = [{ups}]",
        *(f"{k} = {json.dumps(v)}" for k, v in fields.items()),
    ]
    return "\n".join(lines) + "\n"


STUB_CHAT = """
[[models]]
id = "stub-chat"
provider = "stub"
format = "chat"
max_output_tokens = 64
"""


def chunk(
    content: str | None = None,
    *,
    reasoning_content: str | None = None,
    reasoning: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    finish: str | None = None,
    logprobs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    for key, value in (
        ("content", content),
        ("reasoning_content", reasoning_content),
        ("reasoning", reasoning),
        ("tool_calls", tool_calls),
    ):
        if value is not None:
            delta[key] = value
    choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
    if logprobs is not None:
        choice["logprobs"] = {"content": logprobs}
    return {"id": "chatcmpl-up", "object": "chat.completion.chunk", "model": "there", "choices": [choice]}


def usage(prompt: int, completion: int, reasoning: int | None = None) -> dict[str, Any]:
    u: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    if reasoning is not None:
        u["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return {"id": "chatcmpl-up", "object": "chat.completion.chunk", "choices": [], "usage": u}


def sse_bytes(*events: dict[str, Any] | str, done: bool = True) -> bytes:
    out = b"".join(b"data: " + (e if isinstance(e, str) else json.dumps(e)).encode() + b"\n\n" for e in events)
    return out + (b"data: [DONE]\n\n" if done else b"")


def answer(*words: str, prompt_tokens: int | None = 7) -> httpx.Response:
    """A well-formed upstream stream: a role chunk, one chunk per word, stop, usage."""
    events: list[dict[str, Any]] = [chunk("")]
    events += [chunk(w) for w in words]
    events.append(chunk(finish="stop"))
    if prompt_tokens is not None:
        events.append(usage(prompt_tokens, len(words)))
    return httpx.Response(200, headers=SSE, content=sse_bytes(*events))


class BrokenStream(httpx.AsyncByteStream):
    """Sends `parts`, then fails the way a dying upstream does."""

    def __init__(self, parts: Iterable[bytes], exc: Exception) -> None:
        self._parts = list(parts)
        self._exc = exc

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self._parts:
            yield part
        raise self._exc


def dies_after(*words: str) -> httpx.Response:
    """An upstream that streams `words` and then loses its connection."""
    parts = [sse_bytes(chunk(""), done=False), *(sse_bytes(chunk(w), done=False) for w in words)]
    return httpx.Response(200, headers=SSE, stream=BrokenStream(parts, httpx.ReadError("connection reset")))


def body_of(route: respx.Route, call: int = -1) -> dict[str, Any]:
    return json.loads(route.calls[call].request.content)


def asgi(harness: Harness) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(harness.gateway)), base_url="http://gw.test")


CHAT = {"model": "remote", "messages": [{"role": "user", "content": "Hello"}]}


# -- the stream, in-process -------------------------------------------------------


async def test_a_stream_is_relayed_piece_by_piece_with_the_upstreams_usage(
    make_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.post(f"{UP1}/chat/completions").mock(return_value=answer("Hello", " there", "!"))
    h = make_harness(remote_model())
    gen, deltas = await h.run(h.request("remote"))
    assert [(d.kind, d.text) for d in deltas] == [(DeltaKind.CONTENT, t) for t in ("Hello", " there", "!")]
    assert gen.result is not None
    assert gen.result.content == "Hello there!"
    assert gen.result.finish_reason == "stop"
    assert (gen.result.usage.prompt_tokens, gen.result.usage.completion_tokens) == (7, 3)
    (done,) = h.of(GenerationCompleted, gen.request_id)
    assert done.stop_reason == "eos" and done.stub is False
    (routed,) = h.of(ModelRouted, gen.request_id)
    # passed through to the upstream, which decides
    assert {k: routed.capabilities[k] for k in ("tool_calls", "json_schema", "logprobs")} == dict.fromkeys(
        ("tool_calls", "json_schema", "logprobs"), True
    )
    assert route.call_count == 1


async def test_without_upstream_usage_each_piece_counts_one_token(
    make_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(f"{UP1}/chat/completions").mock(return_value=answer("a", "b", "c", "d", prompt_tokens=None))
    h = make_harness(remote_model())
    gen, _ = await h.run(h.request("remote"))
    assert gen.result is not None
    assert gen.result.usage.completion_tokens == 4
    assert gen.result.usage.prompt_tokens == 0  # unknown: the upstream did not say


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_upstream_reasoning_arrives_under_either_name(
    make_harness: HarnessFactory, respx_mock: respx.MockRouter, field: str
) -> None:
    events = [chunk(**{field: "Let me think."}), chunk(**{field: " Done."}), chunk("Four."), chunk(finish="stop")]
    events.append(usage(5, 3, reasoning=2))
    respx_mock.post(f"{UP1}/chat/completions").mock(
        return_value=httpx.Response(200, headers=SSE, content=sse_bytes(*events))
    )
    h = make_harness(remote_model())
    gen, deltas = await h.run(h.request("remote"))
    assert [d.kind for d in deltas] == [DeltaKind.REASONING, DeltaKind.REASONING, DeltaKind.CONTENT]
    assert gen.result is not None
    assert (gen.result.reasoning, gen.result.content) == ("Let me think. Done.", "Four.")
    assert gen.result.usage.reasoning_tokens == 2


def test_reasoning_sent_under_both_names_is_taken_once() -> None:
    # an upstream mia-gateway with reasoning_fields = "both" does exactly this
    reader = ChunkReader("up")
    assert reader.pieces(json.dumps(chunk(reasoning_content="hmm", reasoning="hmm"))) == [
        Open(channel="analysis"),
        Text("hmm", tokens=1),
    ]


async def test_tool_call_deltas_are_relayed_and_aggregated(
    make_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    first = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    # some servers repeat id and name on every delta: they must reach the client once
    again = {"index": 0, "id": "call_1", "function": {"name": "get_weather", "arguments": '{"location": '}}
    rest = {"index": 0, "function": {"arguments": '"Paris"}'}}
    events = [
        chunk(tool_calls=[first]),
        chunk(tool_calls=[again]),
        chunk(tool_calls=[rest]),
        chunk(finish="tool_calls"),
    ]
    respx_mock.post(f"{UP1}/chat/completions").mock(
        return_value=httpx.Response(200, headers=SSE, content=sse_bytes(*events))
    )
    h = make_harness(remote_model())
    tool = Tool(name="get_weather", parameters={"type": "object"})
    gen, deltas = await h.run(h.request("remote", tools=(tool,)))
    assert all(d.kind is DeltaKind.TOOL_CALL for d in deltas)
    assert [(d.tool_id, d.tool_name) for d in deltas] == [("call_1", "get_weather"), (None, None), (None, None)]
    assert gen.result is not None
    assert gen.result.finish_reason == "tool_calls"
    (call,) = gen.result.tool_calls
    assert (call.id, call.name, json.loads(call.arguments)) == ("call_1", "get_weather", {"location": "Paris"})
    (done,) = h.of(GenerationCompleted, gen.request_id)
    assert done.stop_reason == "tool_call"


async def test_logprobs_pass_through(make_harness: HarnessFactory, respx_mock: respx.MockRouter) -> None:
    lp = [
        {"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": [{"token": "Hi", "logprob": -0.1}]},
        {"token": "!", "logprob": -0.5, "bytes": [33], "top_logprobs": []},
    ]
    events = [chunk("Hi!", logprobs=lp), chunk(finish="stop")]
    respx_mock.post(f"{UP1}/chat/completions").mock(
        return_value=httpx.Response(200, headers=SSE, content=sse_bytes(*events))
    )
    h = make_harness(remote_model())
    gen, _ = await h.run(h.request("remote", logprobs=True, top_logprobs=1))
    assert gen.result is not None
    assert [(e.token, e.logprob) for e in gen.result.logprobs] == [("Hi", -0.1), ("!", -0.5)]
    assert gen.result.logprobs[0].top_logprobs[0].bytes == [72, 105]  # filled in when the upstream omits them


async def test_the_request_sent_upstream(
    make_harness: HarnessFactory, respx_mock: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPSTREAM_KEY", "sk-upstream")
    route = respx_mock.post(f"{UP1}/chat/completions").mock(return_value=answer("{}"))
    toml = remote_model().replace('model = "there-0" }', 'model = "there-0", api_key_env = "UPSTREAM_KEY" }')
    h = make_harness(toml + "\n[models.sampling]\ntemperature = 0.3\ntop_k = 40\nrepeat_penalty = 1.1\n")
    tool = Tool(name="lookup", description="Look it up.", parameters={"type": "object", "properties": {}})
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    req = h.request(
        "remote",
        stop=("END",),
        tools=(tool,),
        tool_choice="function:lookup",
        response_format=ResponseFormat(type="json_schema", schema=schema, name="thing", strict=True),
    )
    req = msgspec.structs.replace(req, sampling=SamplingOverrides(max_tokens=500, seed=3, reasoning_effort="low"))
    await h.run(req)
    sent = route.calls[0].request
    assert sent.headers["authorization"] == "Bearer sk-upstream"
    assert sent.headers["x-request-id"] == req.request_id
    body = json.loads(sent.content)
    assert body["model"] == "there-0"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [{"role": "user", "content": "Hello there"}]
    assert body["max_tokens"] == 64  # the passport cap applied before going upstream
    assert (body["temperature"], body["top_k"], body["seed"]) == (0.3, 40, 3)
    # under both servers' names: llama.cpp's server reads the first, vLLM the second
    assert body["repeat_penalty"] == body["repetition_penalty"] == 1.1
    assert body["stop"] == ["END"] and body["reasoning_effort"] == "low"
    assert body["tools"] == [
        {
            "type": "function",
            "function": {"name": "lookup", "description": "Look it up.", "parameters": tool.parameters},
        }
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "lookup"}}
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "thing", "schema": schema, "strict": True},
    }


async def test_a_local_stop_sequence_ends_the_upstream_stream_early(
    make_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(f"{UP1}/chat/completions").mock(return_value=answer("one", " two", " END", " three"))
    h = make_harness(remote_model())
    gen, _ = await h.run(h.request("remote", stop=("END",)))
    assert gen.result is not None
    assert gen.result.content == "one two "
    assert gen.result.finish_reason == "stop"
    entry = h.gateway.manager.get("remote")
    assert entry is not None and isinstance(entry.provider, OpenAIHTTPProvider)
    (up,) = entry.provider.pool.upstreams
    assert up.in_flight == 0 and up.consecutive_failures == 0  # stopping early is not a failure


# -- malformed upstreams ----------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, headers=SSE, content=b"data: {not json\n\n"),
        httpx.Response(200, headers=SSE, content=b'data: {"choices": "many"}\n\n'),
        httpx.Response(200, headers={"content-type": "application/json"}, content=b'{"choices": []}'),
        httpx.Response(200, headers=SSE, content=sse_bytes(chunk(""), done=False)),  # ends without finishing
    ],
    ids=["bad-json", "bad-shape", "not-sse", "truncated"],
)
async def test_a_malformed_upstream_before_the_first_token_is_a_clean_502(
    make_harness: HarnessFactory, respx_mock: respx.MockRouter, response: httpx.Response
) -> None:
    respx_mock.post(f"{UP1}/chat/completions").mock(return_value=response)
    h = make_harness(remote_model())
    with pytest.raises(UpstreamFailure) as info:
        await h.start(h.request("remote"))
    assert info.value.status == 502 and info.value.reason in ("bad_response", "network_error")
    assert not h.of(GenerationCancelled)  # it never started


async def test_malformed_sse_mid_stream_ends_the_stream_with_an_error(
    make_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    content = sse_bytes(chunk("fine"), done=False) + b"data: {oops\n\n"
    respx_mock.post(f"{UP1}/chat/completions").mock(return_value=httpx.Response(200, headers=SSE, content=content))
    h = make_harness(remote_model())
    gen = await h.start(h.request("remote"))
    got = []
    with pytest.raises(UpstreamError):
        async for d in gen.deltas():
            got.append(d.text)
    assert got == ["fine"]
    (cancelled,) = h.of(GenerationCancelled, gen.request_id)
    assert cancelled.reason == "upstream_error"


def test_sse_comments_fields_and_multiline_data() -> None:
    sse = SSEDecoder()
    lines = [": keep-alive", "event: message", "id: 7", 'data: {"a":', "data: 1}", "", "data:[DONE]", ""]
    assert [d for d in map(sse.feed, lines) if d is not None] == ['{"a":\n1}', "[DONE]"]


# -- upstream errors on the wire --------------------------------------------------


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
    make_harness: HarnessFactory,
    respx_mock: respx.MockRouter,
    status: int,
    body: Any,
    expect_status: int,
    expect_code: str | None,
) -> None:
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    respx_mock.post(f"{UP1}/chat/completions").mock(return_value=httpx.Response(status, content=content))
    h = make_harness(remote_model())
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


# -- through the app --------------------------------------------------------------


async def test_non_stream_and_stream_through_the_app(
    make_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(f"{UP1}/chat/completions").mock(side_effect=lambda _: answer("Hi", " you"))
    h = make_harness(remote_model())
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
    make_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    h = make_harness(remote_model(upstreams=("http://user:secret@up1.test:8001/v1", UP2)))
    async with asgi(h) as client:
        card = (await client.get("/v1/models/remote")).json()
    assert card["provider"] == "openai_http" and card["stub"] is False and card["pipeline"] == "lightweight"
    ups = card["upstreams"]
    assert [u["url"] for u in ups] == ["http://up1.test:8001/v1", UP2]
    assert "secret" not in json.dumps(card)
    assert {(u["state"], u["in_flight"], u["consecutive_failures"]) for u in ups} == {("healthy", 0, 0)}


# -- load and unload --------------------------------------------------------------


async def test_a_missing_api_key_variable_serves_the_stub_and_says_why(
    make_harness: HarnessFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    toml = remote_model().replace('model = "there-0" }', 'model = "there-0", api_key_env = "NO_SUCH_KEY_VAR" }')
    h = make_harness(toml)
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


async def test_clients_open_at_load_and_close_at_unload(make_harness: HarnessFactory) -> None:
    h = make_harness(remote_model(upstreams=(UP1, UP2)))
    entry = h.gateway.manager.get("remote")
    assert entry is not None
    provider = entry.provider
    assert isinstance(provider, OpenAIHTTPProvider)
    assert all(u.client is None for u in provider.pool.upstreams)
    await h.gateway.manager.ensure_loaded(entry)
    clients = [u.client for u in provider.pool.upstreams]
    assert all(c is not None for c in clients) and clients[0] is not clients[1]
    await h.gateway.manager.shutdown()
    assert all(c is not None and c.is_closed for c in clients)
    assert all(u.client is None for u in provider.pool.upstreams)


async def test_metrics_count_upstream_requests_by_result(
    make_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(f"{UP1}/chat/completions").mock(side_effect=[answer("x"), httpx.Response(400, json={})])
    h = make_harness(remote_model())
    install_metrics(h.gateway)
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
    make_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    words = iter([("red",), ("blue", " sky")])
    route = respx_mock.post(f"{UP1}/chat/completions").mock(side_effect=lambda _: answer(*next(words)))
    h = make_harness(remote_model())
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
