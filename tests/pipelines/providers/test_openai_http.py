"""The `openai_http` provider against respx-mocked upstreams: what it sends, how each
kind of stream comes back (content, reasoning under either name, tool calls, usage,
logprobs), how it opens and closes its clients. Through the app:
tests/app/test_upstream_routes.py."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import msgspec
import pytest
import respx

from pipelines.errors import UpstreamError
from pipelines.events import GenerationCancelled, GenerationCompleted, ModelRouted
from pipelines.providers.openai_http import OpenAIHTTPProvider
from pipelines.types import DeltaKind, ResponseFormat, SamplingOverrides, Tool
from pipelines.upstream import UpstreamFailure
from tests.support.harness import Harness
from tests.support.upstream import SSE, UP1, UP2, answer, body_of, chunk, remote_model, sse_bytes, usage

HarnessFactory = Callable[..., Harness]


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


# -- upstream errors on the wire --------------------------------------------------


# -- through the app --------------------------------------------------------------


# -- load and unload --------------------------------------------------------------


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


async def test_a_call_the_upstream_sent_no_arguments_for_has_an_empty_object(
    make_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "now"}}
    events = [chunk(tool_calls=[call]), chunk(finish="tool_calls")]
    respx_mock.post(f"{UP1}/chat/completions").mock(
        return_value=httpx.Response(200, headers=SSE, content=sse_bytes(*events))
    )
    h = make_harness(remote_model())
    gen, deltas = await h.run(h.request("remote", tools=(Tool(name="now"),), stream=True))
    assert "".join(d.text for d in deltas if d.kind is DeltaKind.TOOL_CALL) == "{}"
    assert gen.result is not None
    assert [(c.name, c.arguments) for c in gen.result.tool_calls] == [("now", "{}")]


async def test_parallel_tool_calls_false_keeps_one_call_even_when_the_upstream_sends_two(
    make_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    first = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "a", "arguments": "{}"}}
    second = {"index": 1, "id": "call_2", "type": "function", "function": {"name": "b", "arguments": "{}"}}
    events = [chunk(tool_calls=[first]), chunk(tool_calls=[second]), chunk(finish="tool_calls")]
    route = respx_mock.post(f"{UP1}/chat/completions").mock(
        return_value=httpx.Response(200, headers=SSE, content=sse_bytes(*events))
    )
    h = make_harness(remote_model())
    tools = (Tool(name="a"), Tool(name="b"))
    gen, deltas = await h.run(h.request("remote", tools=tools, parallel_tool_calls=False))
    assert body_of(route)["parallel_tool_calls"] is False  # asked of the upstream too
    assert [d.tool_name for d in deltas if d.tool_name] == ["a"]
    assert gen.result is not None and gen.result.finish_reason == "tool_calls"
    assert [c.name for c in gen.result.tool_calls] == ["a"]
    (done,) = h.of(GenerationCompleted, gen.request_id)
    assert done.stop_reason == "tool_call"


async def test_the_upstreams_cached_prompt_tokens_are_kept(
    make_harness: HarnessFactory, respx_mock: respx.MockRouter
) -> None:
    counts = usage(40, 1)
    counts["usage"]["prompt_tokens_details"] = {"cached_tokens": 32}
    events = [chunk("hi"), chunk(finish="stop"), counts]
    respx_mock.post(f"{UP1}/chat/completions").mock(
        return_value=httpx.Response(200, headers=SSE, content=sse_bytes(*events))
    )
    h = make_harness(remote_model())
    gen, _ = await h.run(h.request("remote"))
    assert gen.result is not None
    assert (gen.result.usage.prompt_tokens, gen.result.usage.cached_tokens) == (40, 32)
