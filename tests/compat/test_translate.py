"""The wire <-> internal translation: requests decoded the way the route decodes them,
responses and stream chunks in the shapes OpenAI clients parse."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from compat.requests import ChatCompletionRequest
from compat.translate import StreamEncoder, to_completion, to_internal
from pipelines.errors import InvalidRequest, Unsupported
from pipelines.pipeline import PipelineResult
from pipelines.sampling import SamplingSnapshot
from pipelines.types import Delta, DeltaKind, GenerationRequest, StopReason, ToolCall, Usage

_DECODER = msgspec.json.Decoder(ChatCompletionRequest)


def internal(**body: Any) -> GenerationRequest:
    body.setdefault("model", "m")
    body.setdefault("messages", [{"role": "user", "content": "hi"}])
    return to_internal(_DECODER.decode(json.dumps(body)), "req_1")


SNAPSHOT = SamplingSnapshot(
    temperature=1.0,
    top_p=1.0,
    top_k=0,
    min_p=0.0,
    presence_penalty=0.0,
    frequency_penalty=0.0,
    repeat_penalty=1.0,
    seed=None,
    reasoning_effort="medium",
    preset=None,
    max_tokens=16,
    requested_max_tokens=None,
    cap_applied=True,
    cap_source="passport",
)


def result(**kw: Any) -> PipelineResult:
    base: dict[str, Any] = {
        "content": "Hello!",
        "reasoning": "",
        "tool_calls": (),
        "finish_reason": "stop",
        "stop_reason": StopReason.EOS,
        "usage": Usage(prompt_tokens=5, completion_tokens=3, reasoning_tokens=0),
        "sampling": SNAPSHOT,
    }
    base.update(kw)
    return PipelineResult(**base)


def sse(data: bytes) -> list[Any]:
    """The JSON payloads of SSE `data:` events (`[DONE]` kept as the string)."""
    text = data.decode()
    assert text.endswith("\n\n")
    out: list[Any] = []
    for event in text.split("\n\n")[:-1]:
        assert event.startswith("data: "), event
        payload = event.removeprefix("data: ")
        out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


# --- requests ---------------------------------------------------------------------------


def test_a_minimal_request() -> None:
    req = internal()
    assert req.request_id == "req_1" and req.model == "m"
    assert [(m.role, m.content) for m in req.messages] == [("user", "hi")]
    assert req.stream is False and req.n == 1 and req.tool_choice == "none" and req.stop == ()
    assert req.sampling.max_tokens is None and req.sampling.temperature is None


def test_every_role_is_kept_in_order() -> None:
    req = internal(
        messages=[
            {"role": "system", "content": "s"},
            {"role": "developer", "content": "d"},
            {"role": "user", "content": "u", "name": "ann"},
            {"role": "assistant", "content": "a"},
            {"role": "user", "content": "u2"},
        ]
    )
    assert [(m.role, m.content) for m in req.messages] == [
        ("system", "s"),
        ("developer", "d"),
        ("user", "u"),
        ("assistant", "a"),
        ("user", "u2"),
    ]
    assert req.messages[2].name == "ann"


def test_text_content_parts_are_flattened_with_newlines() -> None:
    req = internal(
        messages=[
            {"role": "system", "content": [{"type": "text", "text": "be"}, {"type": "text", "text": "brief"}]},
            {"role": "user", "content": [{"type": "text", "text": "one"}]},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}, {"type": "text", "text": "ok"}]},
            {"role": "user", "content": []},
        ]
    )
    assert [m.content for m in req.messages] == ["be\nbrief", "one", "no\nok", ""]


def test_a_non_text_part_is_unsupported_at_its_index() -> None:
    with pytest.raises(Unsupported) as info:
        internal(
            messages=[
                {"role": "user", "content": "a"},
                {"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {}}]},
            ]
        )
    assert info.value.param == "messages[1].content[1].type"
    assert "image_url" in info.value.message


def test_assistant_content_may_be_null_with_tool_calls() -> None:
    req = internal(
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get", "arguments": '{"city":"Oslo"}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "sunny"}]},
        ]
    )
    assistant, tool = req.messages[1], req.messages[2]
    assert assistant.content == ""
    assert assistant.tool_calls == (ToolCall(id="call_1", name="get", arguments='{"city":"Oslo"}'),)
    assert (tool.role, tool.content, tool.tool_call_id) == ("tool", "sunny", "call_1")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"reasoning_content": "because"}, "because"),
        ({"reasoning": "because"}, "because"),
        ({"reasoning_content": "old name", "reasoning": "new name"}, "old name"),
        ({}, None),
    ],
)
def test_earlier_reasoning_is_accepted_under_either_name(fields: dict[str, str], expected: str | None) -> None:
    req = internal(messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", **fields}])
    assert req.messages[1].reasoning == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"max_tokens": 10}, 10),
        ({"max_completion_tokens": 20}, 20),
        ({"max_tokens": 10, "max_completion_tokens": 20}, 20),
        ({"max_tokens": 30, "max_completion_tokens": 20}, 20),
        ({"max_tokens": 10, "max_completion_tokens": None}, 10),
        ({}, None),
    ],
)
def test_max_completion_tokens_wins_over_max_tokens(fields: dict[str, Any], expected: int | None) -> None:
    assert internal(**fields).sampling.max_tokens == expected


def test_sampling_fields_are_carried() -> None:
    req = internal(
        temperature=0.2,
        top_p=0.8,
        top_k=5,
        min_p=0.1,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        repeat_penalty=1.2,
        seed=42,
        reasoning_effort="high",
        preset="precise",
    )
    s = req.sampling
    assert (s.temperature, s.top_p, s.top_k, s.min_p) == (0.2, 0.8, 5, 0.1)
    assert (s.presence_penalty, s.frequency_penalty, s.repeat_penalty, s.seed) == (0.5, -0.5, 1.2, 42)
    assert s.reasoning_effort == "high"
    assert req.preset == "precise"


def test_minimal_reasoning_effort_maps_to_low() -> None:
    assert internal(reasoning_effort="minimal").sampling.reasoning_effort == "low"


@pytest.mark.parametrize(("stop", "expected"), [("END", ("END",)), (["a", "b"], ("a", "b")), (None, ()), ([], ())])
def test_stop_as_string_or_list(stop: Any, expected: tuple[str, ...]) -> None:
    assert internal(stop=stop).stop == expected


TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "d", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "get_time", "strict": True}},
]


def test_tools_are_carried() -> None:
    req = internal(tools=TOOLS)
    assert [(t.name, t.description, t.parameters, t.strict) for t in req.tools] == [
        ("get_weather", "d", {"type": "object"}, None),
        ("get_time", None, None, True),
    ]


@pytest.mark.parametrize(
    ("tools", "choice", "expected"),
    [
        (None, None, "none"),
        (TOOLS, None, "auto"),
        (TOOLS, "auto", "auto"),
        (TOOLS, "none", "none"),
        (TOOLS, "required", "required"),
        (None, "none", "none"),
        (None, "auto", "auto"),
        (TOOLS, {"type": "function", "function": {"name": "get_time"}}, "function:get_time"),
    ],
)
def test_tool_choice_forms(tools: Any, choice: Any, expected: str) -> None:
    req = internal(tools=tools, tool_choice=choice)
    assert req.tool_choice == expected
    assert req.forced_tool == (expected.removeprefix("function:") if expected.startswith("function:") else None)


def test_a_named_tool_choice_must_be_among_the_tools() -> None:
    with pytest.raises(InvalidRequest) as info:
        internal(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}})
    assert info.value.param == "tool_choice"
    with pytest.raises(InvalidRequest):
        internal(tool_choice={"type": "function", "function": {"name": "get_time"}})


def test_required_tool_choice_needs_tools() -> None:
    with pytest.raises(InvalidRequest) as info:
        internal(tool_choice="required")
    assert info.value.param == "tool_choice"


def test_response_formats() -> None:
    assert internal().response_format.type == "text"
    assert internal(response_format={"type": "text"}).response_format.type == "text"
    assert internal(response_format={"type": "json_object"}).response_format.type == "json_object"
    rf = internal(
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True},
        }
    ).response_format
    assert (rf.type, rf.name, rf.schema, rf.strict) == ("json_schema", "x", {"type": "object"}, True)
    with pytest.raises(InvalidRequest) as info:
        internal(response_format={"type": "json_schema", "json_schema": {"name": "x"}})
    assert info.value.param == "response_format.json_schema.schema"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"top_logprobs": 2, "logprobs": False}, "top_logprobs"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"logit_bias": {"1": 5}}, "logit_bias"),
    ],
)
def test_combinations_types_cannot_check(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        internal(**fields)
    assert info.value.param == param


def test_logprobs_stream_and_n_are_carried() -> None:
    req = internal(logprobs=True, top_logprobs=3, stream=True, stream_options={"include_usage": True}, n=1)
    assert (req.logprobs, req.top_logprobs, req.stream, req.n) == (True, 3, True, 1)
    assert internal(n=3).n == 3  # refused later, by the pipeline, with param "n"
    assert internal(parallel_tool_calls=False).parallel_tool_calls is False
    assert internal().parallel_tool_calls is True


# --- to_completion ------------------------------------------------------------------------


def completion(r: PipelineResult, **kw: Any) -> dict[str, Any]:
    out = to_completion(r, completion_id="chatcmpl-1", model="m", created=123, **kw)
    return json.loads(msgspec.json.encode(out))


def test_completion_shape() -> None:
    body = completion(result())
    assert body["object"] == "chat.completion"
    assert (body["id"], body["model"], body["created"]) == ("chatcmpl-1", "m", 123)
    [choice] = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop" and choice["logprobs"] is None
    msg = choice["message"]
    assert msg["role"] == "assistant" and msg["content"] == "Hello!"
    assert msg["tool_calls"] is None and msg["reasoning_content"] is None and msg["reasoning"] is None
    assert body["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 3,
        "total_tokens": 8,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ("both", {"reasoning_content": "think", "reasoning": "think"}),
        ("reasoning_content", {"reasoning_content": "think", "reasoning": None}),
        ("reasoning", {"reasoning_content": None, "reasoning": "think"}),
    ],
)
def test_reasoning_goes_to_the_configured_fields(fields: Any, expected: dict[str, Any]) -> None:
    msg = completion(result(reasoning="think"), reasoning_fields=fields)["choices"][0]["message"]
    assert {k: msg[k] for k in expected} == expected
    assert msg["content"] == "Hello!"


def test_tool_calls_leave_content_null() -> None:
    calls = (ToolCall(id="call_1", name="get", arguments='{"a":1}'), ToolCall(id="call_2", name="put", arguments="{}"))
    body = completion(result(content="", tool_calls=calls, finish_reason="tool_calls"))
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "get", "arguments": '{"a":1}'}},
        {"id": "call_2", "type": "function", "function": {"name": "put", "arguments": "{}"}},
    ]


def test_an_empty_answer_is_an_empty_string_not_null() -> None:
    assert completion(result(content=""))["choices"][0]["message"]["content"] == ""


def test_logprobs_appear_only_when_asked() -> None:
    assert completion(result(), logprobs=True)["choices"][0]["logprobs"] == {"content": [], "refusal": None}
    assert completion(result())["choices"][0]["logprobs"] is None


# --- StreamEncoder ------------------------------------------------------------------------


def encoder(**kw: Any) -> StreamEncoder:
    return StreamEncoder(completion_id="chatcmpl-1", model="m", created=123, **kw)


def test_the_first_chunk_carries_the_role() -> None:
    [chunk] = sse(encoder().first())
    assert chunk["object"] == "chat.completion.chunk"
    assert (chunk["id"], chunk["model"], chunk["created"]) == ("chatcmpl-1", "m", 123)
    [choice] = chunk["choices"]
    assert choice["index"] == 0
    assert choice["delta"] == {"role": "assistant", "content": ""}
    assert choice["finish_reason"] is None


def test_content_deltas_carry_only_content() -> None:
    [chunk] = sse(encoder().delta(Delta(kind=DeltaKind.CONTENT, text="Hel")))
    assert chunk["choices"][0]["delta"] == {"content": "Hel"}
    assert chunk["choices"][0]["finish_reason"] is None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ("both", {"reasoning_content": "hmm", "reasoning": "hmm"}),
        ("reasoning_content", {"reasoning_content": "hmm"}),
        ("reasoning", {"reasoning": "hmm"}),
    ],
)
def test_reasoning_deltas_use_the_configured_fields(fields: Any, expected: dict[str, str]) -> None:
    [chunk] = sse(encoder(reasoning_fields=fields).delta(Delta(kind=DeltaKind.REASONING, text="hmm")))
    assert chunk["choices"][0]["delta"] == expected


def test_tool_call_deltas_name_first_then_arguments() -> None:
    enc = encoder()
    [first] = sse(enc.delta(Delta(kind=DeltaKind.TOOL_CALL, tool_index=0, tool_id="call_1", tool_name="get")))
    [more] = sse(enc.delta(Delta(kind=DeltaKind.TOOL_CALL, tool_index=0, text='{"a":')))
    [second] = sse(
        enc.delta(Delta(kind=DeltaKind.TOOL_CALL, tool_index=1, tool_id="call_2", tool_name="put", text="{}"))
    )
    assert first["choices"][0]["delta"] == {
        "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get", "arguments": ""}}]
    }
    assert more["choices"][0]["delta"] == {"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}
    assert second["choices"][0]["delta"]["tool_calls"][0]["function"] == {"name": "put", "arguments": "{}"}


def test_the_final_chunk_has_the_finish_reason_and_an_empty_delta() -> None:
    chunks = sse(encoder().final(result(finish_reason="length")))
    assert len(chunks) == 1
    [choice] = chunks[0]["choices"]
    assert choice["delta"] == {}
    assert choice["finish_reason"] == "length"
    assert chunks[0]["usage"] is None


def test_include_usage_adds_one_chunk_with_no_choices() -> None:
    chunks = sse(encoder(include_usage=True).final(result(usage=Usage(prompt_tokens=4, completion_tokens=6))))
    assert len(chunks) == 2
    final, usage = chunks
    assert final["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == []
    assert usage["usage"]["prompt_tokens"] == 4
    assert usage["usage"]["completion_tokens"] == 6
    assert usage["usage"]["total_tokens"] == 10
    assert usage["id"] == final["id"] and usage["object"] == "chat.completion.chunk"


def test_a_whole_stream_reads_like_openai() -> None:
    enc = encoder(include_usage=True)
    data = (
        enc.first()
        + enc.delta(Delta(kind=DeltaKind.REASONING, text="think "))
        + enc.delta(Delta(kind=DeltaKind.CONTENT, text="Hi"))
        + enc.delta(Delta(kind=DeltaKind.CONTENT, text="!"))
        + enc.final(result(content="Hi!", reasoning="think "))
        + enc.done()
    )
    events = sse(data)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["delta"].get("role")) == 1
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes == [None, None, None, None, "stop"]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "Hi!"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 8
    assert len({c["id"] for c in chunks}) == 1


def test_error_and_done_lines() -> None:
    assert encoder().error(b'{"error":{}}') == b'data: {"error":{}}\n\n'
    assert StreamEncoder.done() == b"data: [DONE]\n\n"


# --- several choices (n > 1) ----------------------------------------------------------------


def test_every_choice_is_its_own_message() -> None:
    choices = (
        result(content="red", index=0, finish_reason="stop"),
        result(content="blue and", index=1, finish_reason="length"),
    )
    combined = result(content="red", usage=Usage(prompt_tokens=5, completion_tokens=9), choices=choices)
    body = completion(combined)
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in body["choices"]] == [
        (0, "red", "stop"),
        (1, "blue and", "length"),
    ]
    assert body["usage"]["completion_tokens"] == 9 and body["usage"]["prompt_tokens"] == 5


def test_a_stream_of_choices_names_each_chunks_index() -> None:
    enc = encoder(choices=3)
    assert [c["choices"][0]["index"] for c in sse(enc.first())] == [0, 1, 2]
    [chunk] = sse(enc.delta(Delta(kind=DeltaKind.CONTENT, text="x", choice=2)))
    assert chunk["choices"][0] == {"index": 2, "delta": {"content": "x"}, "finish_reason": None, "logprobs": None}
    combined = result(choices=(result(index=0, finish_reason="stop"), result(index=1, finish_reason="length")))
    assert [(c["choices"][0]["index"], c["choices"][0]["finish_reason"]) for c in sse(enc.final(combined))] == [
        (0, "stop"),
        (1, "length"),
    ]


def test_a_choice_that_ended_early_is_not_finished_twice() -> None:
    enc = encoder(choices=2)
    [chunk] = sse(enc.delta(Delta(kind=DeltaKind.FINISH, choice=1, finish="length")))
    assert chunk["choices"][0] == {"index": 1, "delta": {}, "finish_reason": "length", "logprobs": None}
    combined = result(choices=(result(index=0, finish_reason="stop"), result(index=1, finish_reason="length")))
    assert [(c["choices"][0]["index"], c["choices"][0]["finish_reason"]) for c in sse(enc.final(combined))] == [
        (0, "stop")
    ]


@pytest.mark.parametrize(
    ("schema", "code"),
    [
        ({"type": "object", "required": "a"}, "invalid_json_schema"),
        ({"type": "strong"}, "invalid_json_schema"),
        ({"type": "integer", "minimum": "0"}, "invalid_json_schema"),
        ({"type": "integer", "minimum": 5, "maximum": 3}, "invalid_json_schema"),
        ({"$ref": "#/$defs/none"}, "invalid_json_schema"),
        (json.loads('{"items": ' * 80 + "{}" + "}" * 80), "json_schema_too_complex"),
    ],
)
def test_a_schema_that_cannot_be_used_is_a_400_with_a_code_naming_the_field(schema: Any, code: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        internal(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert (info.value.code, info.value.param) == (code, "response_format.json_schema.schema")
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    bad = {"type": "function", "function": {"name": "g", "parameters": schema}}
    with pytest.raises(InvalidRequest) as info:
        internal(tools=[tool, bad])
    assert (info.value.code, info.value.param) == (code, "tools[1].function.parameters")


def test_schemas_as_pydantic_and_zod_write_them_are_accepted() -> None:
    pydantic = {
        "properties": {"age": {"minimum": 0, "maximum": 150, "title": "Age", "type": "integer"}},
        "required": ["age"],
        "title": "Person",
        "type": "object",
    }
    zod = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": -9007199254740991, "maximum": 9007199254740991}},
        "required": ["n"],
        "additionalProperties": False,
    }
    for schema in (pydantic, zod):
        rf = internal(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
        assert rf.response_format.schema == schema
