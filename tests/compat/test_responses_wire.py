"""The Responses wire without HTTP: requests decoded as the route decodes them and
translated to the internal request; results and delta streams encoded, every object and
event validated with the openai SDK's own models."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from openai.types.responses import Response

from compat.errors import decode_error, from_gateway_error
from compat.refusals import PreviousResponseNotFound
from compat.responses_wire import ResponseStreamEncoder, Translated, decode_responses_request, to_internal, to_response
from pipelines.errors import GatewayError, InvalidRequest, Unsupported
from pipelines.types import Delta, DeltaKind, LogprobEntry, Message, ToolCall, ToolNamespace, TopLogprob
from tests.compat.test_translate import result
from tests.support.responses import check_stream, events


def translated(**body: Any) -> Translated:
    body.setdefault("model", "m")
    body.setdefault("input", "hi")
    return to_internal(decode_responses_request(json.dumps(body).encode()), "req_1")


def refusal(**body: Any) -> GatewayError:
    body.setdefault("model", "m")
    body.setdefault("input", "hi")
    try:
        to_internal(decode_responses_request(json.dumps(body).encode()), "req_1")
    except msgspec.DecodeError as exc:
        return decode_error(exc)
    except GatewayError as exc:
        return exc
    raise AssertionError("accepted")


# --- requests -------------------------------------------------------------------------------


def test_a_string_input_is_one_user_message_after_the_instructions() -> None:
    t = translated(input="Hello", instructions="Be brief.", max_output_tokens=7, temperature=0.2)
    assert t.request.messages == (Message(role="developer", content="Be brief."), Message(role="user", content="Hello"))
    assert t.request.sampling.max_tokens == 7 and t.request.sampling.temperature == 0.2
    assert t.request.tool_choice == "none" and not t.request.stream


def test_items_become_turns_with_calls_outputs_and_reasoning() -> None:
    t = translated(
        input=[
            {"role": "user", "content": "Weather?"},  # an "easy" message: no `type`
            {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "look"}]},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Sunny."}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Thanks"}]},
        ]
    )
    assert t.request.messages == (
        Message(role="user", content="Weather?"),
        Message(
            role="assistant",
            reasoning="look",
            tool_calls=(ToolCall(id="call_1", name="get_weather", arguments="{}"),),
        ),
        Message(role="tool", content="sunny", tool_call_id="call_1"),
        Message(role="assistant", content="Sunny."),
        Message(role="user", content="Thanks"),
    )


def test_tools_functions_namespaces_custom_and_hosted() -> None:
    t = translated(
        tools=[
            {"type": "function", "name": "shell", "parameters": {"type": "object"}, "strict": True},
            {
                "type": "namespace",
                "name": "agents",
                "description": "x",
                "tools": [{"type": "function", "name": "spawn"}],
            },
            {"type": "custom", "name": "apply_patch", "description": "a patch"},
            {"type": "web_search", "external_web_access": True},
            {"type": "mcp", "server_label": "x"},
        ],
        tool_choice={"type": "function", "name": "agents.spawn"},
    )
    tools = {tool.name: tool for tool in t.request.tools}
    assert list(tools) == ["shell", "agents.spawn", "apply_patch"]
    assert tools["shell"].strict is True
    assert tools["apply_patch"].parameters is not None
    assert tools["apply_patch"].parameters["required"] == ["input"]
    assert t.ignored_tools == ("web_search", "mcp")
    assert t.namespaces == {"agents.spawn": ("agents", "spawn")}
    assert tools["agents.spawn"].namespace == ToolNamespace("agents", "x") and tools["shell"].namespace is None
    assert t.request.tool_choice == "function:agents.spawn"
    assert [tool.name for tool in t.template.tools] == ["shell", "agents", "apply_patch"]  # hosted not echoed


def test_the_namespace_functions_is_harmonys_own_and_tools_may_come_in_the_input() -> None:
    """What Codex sends for some models: its tools in an `additional_tools` input item,
    plain ones in a namespace named `functions`, and a `tool_search` tool."""
    functions = {
        "type": "namespace",
        "name": "functions",
        "description": "",
        "tools": [{"type": "function", "name": "f"}],
    }
    clock = {
        "type": "namespace",
        "name": "clock",
        "description": "Time.",
        "tools": [{"type": "function", "name": "sleep"}],
    }
    search = {"type": "tool_search", "execution": "client", "parameters": {"type": "object"}}
    t = translated(
        tools=[{"type": "function", "name": "g"}, search],
        input=[
            {"type": "additional_tools", "role": "developer", "tools": [functions, clock, {"type": "web_search"}]},
            {"role": "user", "content": "hi"},
            {"type": "function_call", "call_id": "c", "name": "f", "namespace": "functions", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "ok"},
        ],
    )
    assert [(x.name, x.namespace) for x in t.request.tools] == [
        ("g", None),
        ("f", None),
        ("clock.sleep", ToolNamespace("clock", "Time.")),
    ]
    assert t.ignored_tools == ("tool_search", "web_search")
    assert t.namespaces == {"f": ("functions", "f"), "clock.sleep": ("clock", "sleep")}
    assert t.request.messages[0] == Message(role="user", content="hi")  # the tools item is no turn
    assert t.request.messages[1].tool_calls == (ToolCall("c", "f", "{}"),)
    out = response(t, content="", tool_calls=(ToolCall("call_2", "f", "{}"),), finish_reason="tool_calls")
    assert (out["output"][-1]["name"], out["output"][-1]["namespace"]) == ("f", "functions")
    # a plain function and one of `functions` are the same name twice
    exc = refusal(tools=[{"type": "function", "name": "f"}, functions])
    assert exc.status == 400 and exc.param == "tools"
    exc = refusal(input=[{"type": "additional_tools", "role": "developer", "tools": [{"type": "shell_of_mystery"}]}])
    assert exc.param == "input[0].tools[0].type"


def test_a_namespaced_call_sent_back_is_the_flat_name() -> None:
    t = translated(
        input=[
            {"type": "function_call", "call_id": "c", "name": "spawn", "namespace": "agents", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": [{"type": "input_text", "text": "ok"}]},
        ]
    )
    assert t.request.messages[0].tool_calls[0].name == "agents.spawn"
    assert t.request.messages[1] == Message(role="tool", content="ok", tool_call_id="c")


def test_text_format_reasoning_and_logprobs() -> None:
    t = translated(
        text={"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}},
        reasoning={"effort": "minimal", "summary": "auto"},
        include=["message.output_text.logprobs"],
        top_logprobs=3,
    )
    assert t.request.response_format.type == "json_schema" and t.request.response_format.strict
    assert t.request.sampling.reasoning_effort == "low"
    assert t.request.logprobs and t.request.top_logprobs == 3 and t.logprobs
    assert t.template.reasoning.effort == "minimal"
    assert translated(top_logprobs=3).request.top_logprobs == 0  # not asked for in `include`


def test_store_is_never_pretended() -> None:
    assert translated().asked_store and translated(store=True).asked_store
    assert not translated(store=False).asked_store
    assert translated(store=True).template.store is False


@pytest.mark.parametrize(
    ("body", "param", "cls"),
    [
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input[0].content[0].type",
            Unsupported,
        ),
        (
            {"input": ["x", {"role": "user", "content": "a"}]},
            "input[0]",
            InvalidRequest,
        ),
        (
            {"input": [{"type": "function_call_output", "call_id": "c", "output": [{"type": "input_file"}]}]},
            "input[0].output[0].type",
            Unsupported,
        ),
        ({"input": [{"type": "web_search_call", "id": "x"}]}, "input[0].type", InvalidRequest),
        ({"tools": [{"type": "local_shell"}]}, "tools[0].type", InvalidRequest),
        ({"tools": [{"type": "function", "name": "bad name"}]}, "tools[0].name", InvalidRequest),
        ({"tool_choice": {"type": "function", "name": "nope"}}, "tool_choice", InvalidRequest),
        ({"tool_choice": "required"}, "tool_choice", InvalidRequest),
        ({"max_output_tokens": 0}, "max_output_tokens", InvalidRequest),
        ({"max_output_tokens": 10**30}, "max_output_tokens", InvalidRequest),
        ({"temperature": "hot"}, "temperature", InvalidRequest),
        ({"conversation": "conv_1"}, "conversation", Unsupported),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].id", Unsupported),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema", InvalidRequest),
        (
            {"text": {"format": {"type": "json_schema", "name": "x", "schema": {"required": 1}}}},
            "text.format.schema",
            InvalidRequest,
        ),
        (
            {"tools": [{"type": "function", "name": "f", "parameters": {"type": 3}}]},
            "tools[0].parameters",
            InvalidRequest,
        ),
        (
            {
                "tools": [
                    {
                        "type": "namespace",
                        "name": "n",
                        "description": "d",
                        "tools": [{"type": "function", "name": "f", "parameters": {"enum": 1}}],
                    }
                ]
            },
            "tools[0].tools[0].parameters",
            InvalidRequest,
        ),
        ({"input": []}, "input", InvalidRequest),
    ],
)
def test_refusals_name_the_exact_item(body: dict[str, Any], param: str, cls: type[GatewayError]) -> None:
    exc = refusal(**body)
    assert isinstance(exc, cls)
    assert exc.status == 400 and exc.param == param, exc.message


@pytest.mark.parametrize("first", [True, False])
def test_a_number_too_long_to_read_is_a_400_whatever_the_items(first: bool) -> None:
    # an easy message (no `type`) takes the second, untyped reading, which cannot read the
    # number either: the typed reading's error stands, naming what it met first
    huge, easy = b'"max_output_tokens": ' + b"9" * 5000, b'"input": [{"role": "user", "content": "hi"}]'
    body = b'{"model": "m", ' + (huge + b", " + easy if first else easy + b", " + huge) + b"}"
    with pytest.raises(msgspec.ValidationError) as exc:
        decode_responses_request(body)
    error = decode_error(exc.value)
    assert error.status == 400
    assert error.param == ("max_output_tokens" if first else "input[0].type")


def test_previous_response_id_is_not_found_in_the_envelope() -> None:
    err = from_gateway_error(PreviousResponseNotFound("resp_123"))
    assert err.status == 404
    assert msgspec.to_builtins(err.body)["error"] == {
        "message": "Previous response with id 'resp_123' not found.",
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
    }


def test_a_stored_conversation_comes_before_the_input_and_after_the_instructions() -> None:
    history = decode_responses_request(
        json.dumps(
            {
                "model": "m",
                "input": [
                    {"role": "user", "content": "Weather?"},
                    {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "ask"}]},
                    {"type": "function_call", "call_id": "call_1", "name": "w", "arguments": "{}"},
                ],
            }
        ).encode()
    ).input
    assert not isinstance(history, str)
    body = {"model": "m", "input": "And tomorrow?", "instructions": "Be brief.", "previous_response_id": "resp_1"}
    t = to_internal(decode_responses_request(json.dumps(body).encode()), "req_1", history=history)
    assert [(m.role, m.content) for m in t.request.messages] == [
        ("developer", "Be brief."),
        ("user", "Weather?"),
        ("assistant", ""),
        ("user", "And tomorrow?"),
    ]
    assert t.request.messages[2].reasoning == "ask" and t.request.messages[2].tool_calls[0].id == "call_1"
    assert t.template.previous_response_id == "resp_1"


# --- the response object --------------------------------------------------------------------


def response(t: Translated, **kw: Any) -> dict[str, Any]:
    template = msgspec.structs.replace(t.template, id="resp_1", created_at=1)
    out = msgspec.to_builtins(to_response(result(**kw), t, template))
    Response.model_validate(out, strict=False)  # the SDK's own model reads it
    assert isinstance(out, dict)
    return out


def test_a_harmony_answer_is_reasoning_then_message() -> None:
    out = response(translated(), content="Hi!", reasoning="think")
    assert out["object"] == "response" and out["status"] == "completed" and out["error"] is None
    reasoning, message = out["output"]
    assert reasoning["type"] == "reasoning" and reasoning["id"].startswith("rs_")
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "think"}] and reasoning["summary"] == []
    assert message["id"].startswith("msg_") and message["role"] == "assistant" and message["status"] == "completed"
    assert message["content"] == [{"type": "output_text", "text": "Hi!", "annotations": [], "logprobs": []}]
    assert out["usage"] == {
        "input_tokens": 5,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 8,
    }
    assert out["store"] is False


def test_calls_come_back_with_the_clients_names() -> None:
    t = translated(
        tools=[
            {"type": "function", "name": "shell"},
            {
                "type": "namespace",
                "name": "agents",
                "description": "",
                "tools": [{"type": "function", "name": "spawn"}],
            },
        ]
    )
    calls = (
        ToolCall(id="call_a", name="shell", arguments="{}"),
        ToolCall(id="call_b", name="agents.spawn", arguments="{}"),
    )
    out = response(t, content="", tool_calls=calls, finish_reason="tool_calls")
    first, second = out["output"]
    assert first["type"] == "function_call" and first["id"].startswith("fc_")
    assert (first["call_id"], first["name"], first["arguments"]) == ("call_a", "shell", "{}")
    assert "namespace" not in first
    assert (second["name"], second["namespace"]) == ("spawn", "agents")


def test_an_answer_cut_by_the_cap_is_incomplete() -> None:
    out = response(translated(max_output_tokens=3), finish_reason="length")
    assert out["status"] == "incomplete" and out["incomplete_details"] == {"reason": "max_output_tokens"}
    assert out["output"][-1]["status"] == "incomplete" and out["max_output_tokens"] == 3


def test_an_answer_cut_while_reasoning_is_its_reasoning_as_streamed() -> None:
    t = translated(max_output_tokens=2)
    out = response(t, content="", reasoning="so ", finish_reason="length")
    streamed = check_stream(
        run(t, [Delta(DeltaKind.REASONING, "so ")], content="", reasoning="so ", finish_reason="length")
    )
    for answer in (out, streamed):
        assert [(i["type"], i["status"]) for i in answer["output"]] == [("reasoning", "incomplete")]
        assert answer["status"] == "incomplete"


def test_logprobs_are_in_the_message_when_asked() -> None:
    entry = LogprobEntry(token="Hi", logprob=-0.5, bytes=[72, 105], top_logprobs=[TopLogprob("Hi", -0.5, [72, 105])])
    out = response(translated(include=["message.output_text.logprobs"]), logprobs=(entry,))
    [lp] = out["output"][0]["content"][0]["logprobs"]
    assert lp["token"] == "Hi" and lp["top_logprobs"][0]["logprob"] == -0.5


# --- the stream -----------------------------------------------------------------------------


def run(t: Translated, deltas: list[Delta], **kw: Any) -> list[dict[str, Any]]:
    enc = ResponseStreamEncoder(msgspec.structs.replace(t.template, id="resp_1", created_at=1), t)
    data = enc.first() + b"".join(enc.delta(d) for d in deltas) + enc.final(result(**kw)) + enc.done()
    return events(data)


def test_a_harmony_stream_is_a_reasoning_item_then_a_message() -> None:
    stream = run(
        translated(),
        [
            Delta(DeltaKind.REASONING, "thi"),
            Delta(DeltaKind.REASONING, "nk"),
            Delta(DeltaKind.CONTENT, "Hi"),
            Delta(DeltaKind.CONTENT, "!"),
        ],
        content="Hi!",
        reasoning="think",
    )
    final = check_stream(stream)
    assert stream[-1]["type"] == "response.completed" and final["status"] == "completed"
    assert [i["type"] for i in final["output"]] == ["reasoning", "message"]
    assert final["output"][0]["content"][0]["text"] == "think"
    assert final["output"][1]["content"][0]["text"] == "Hi!"
    kinds = [e["type"] for e in stream[2:]]
    assert kinds == [
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]


def test_calls_stream_their_arguments_and_close_with_the_response() -> None:
    t = translated(
        tools=[
            {"type": "namespace", "name": "ns", "description": "", "tools": [{"type": "function", "name": "f"}]},
            {"type": "function", "name": "g"},
        ]
    )
    stream = run(
        t,
        [
            Delta(DeltaKind.CONTENT, "Let me check."),
            Delta(DeltaKind.TOOL_CALL, tool_index=0, tool_id="call_1", tool_name="ns.f"),
            Delta(DeltaKind.TOOL_CALL, '{"a":', tool_index=0),
            Delta(DeltaKind.TOOL_CALL, tool_index=1, tool_id="call_2", tool_name="g", text="{}"),
            Delta(DeltaKind.TOOL_CALL, "1}", tool_index=0),  # back to the first call
        ],
        finish_reason="tool_calls",
    )
    final = check_stream(stream)
    message, first, second = final["output"]
    assert message["type"] == "message" and message["status"] == "completed"
    assert (first["name"], first["namespace"], first["call_id"], first["arguments"]) == ("f", "ns", "call_1", '{"a":1}')
    assert (second["name"], second["arguments"]) == ("g", "{}")
    added = [e["item"] for e in stream if e["type"] == "response.output_item.added"]
    assert added[1] == {**first, "arguments": "", "status": "in_progress"}


def test_a_custom_tool_call_is_its_free_text() -> None:
    t = translated(tools=[{"type": "custom", "name": "apply_patch"}])
    call = ToolCall(id="call_p", name="apply_patch", arguments='{"input": "*** Begin Patch"}')
    [item] = response(t, content="", tool_calls=(call,), finish_reason="tool_calls")["output"]
    assert item["type"] == "custom_tool_call" and item["id"].startswith("ctc_")
    assert (item["call_id"], item["name"], item["input"]) == ("call_p", "apply_patch", "*** Begin Patch")
    stream = run(
        t,
        [
            Delta(DeltaKind.TOOL_CALL, tool_index=0, tool_id="call_p", tool_name="apply_patch"),
            Delta(DeltaKind.TOOL_CALL, '{"input": "*** Begin', tool_index=0),
            Delta(DeltaKind.TOOL_CALL, ' Patch"}', tool_index=0),
        ],
        finish_reason="tool_calls",
    )
    final = check_stream(stream)
    assert final["output"][0]["input"] == "*** Begin Patch"
    assert "response.function_call_arguments.delta" not in {e["type"] for e in stream}
    # a call that is not `{"input": ...}` keeps its text as it came
    odd = ToolCall(id="c", name="apply_patch", arguments="raw text")
    assert response(t, content="", tool_calls=(odd,))["output"][0]["input"] == "raw text"


def test_a_stream_cut_by_the_cap_ends_incomplete() -> None:
    stream = run(translated(), [Delta(DeltaKind.CONTENT, "a b")], content="a b", finish_reason="length")
    final = check_stream(stream)
    assert stream[-1]["type"] == "response.incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["output"][0]["status"] == "incomplete"


def test_an_empty_answer_is_still_one_message() -> None:
    final = check_stream(run(translated(), [], content=""))
    assert [i["type"] for i in final["output"]] == ["message"] and final["output"][0]["content"][0]["text"] == ""


def test_a_failure_mid_stream_is_an_error_then_failed() -> None:
    t = translated()
    enc = ResponseStreamEncoder(msgspec.structs.replace(t.template, id="resp_1", created_at=1), t)
    data = enc.first() + enc.delta(Delta(DeltaKind.CONTENT, "Hel"))
    data += enc.failure(from_gateway_error(Unsupported("boom", param="x"))) + enc.done()
    stream = events(data)
    error, failed = stream[-2:]
    assert error == {
        "type": "error",
        "code": "unsupported_parameter",
        "message": "boom",
        "param": "x",
        "sequence_number": 5,
    }
    assert failed["type"] == "response.failed" and failed["sequence_number"] == 6
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {"code": "server_error", "message": "boom"}
    assert failed["response"]["output"][0]["status"] == "incomplete"
    assert failed["response"]["output"][0]["content"][0]["text"] == "Hel"


def test_logprobs_ride_on_the_text_deltas_when_asked() -> None:
    entry = LogprobEntry(token="Hi", logprob=-0.25, bytes=[72, 105])
    stream = run(
        translated(include=["message.output_text.logprobs"]), [Delta(DeltaKind.CONTENT, "Hi", logprobs=(entry,))]
    )
    [delta] = [e for e in stream if e["type"] == "response.output_text.delta"]
    assert delta["logprobs"][0]["logprob"] == -0.25
    final = check_stream(stream)
    assert final["output"][0]["content"][0]["logprobs"][0]["token"] == "Hi"
    plain = run(translated(), [Delta(DeltaKind.CONTENT, "Hi", logprobs=(entry,))])
    assert [e["logprobs"] for e in plain if e["type"] == "response.output_text.delta"] == [[]]
