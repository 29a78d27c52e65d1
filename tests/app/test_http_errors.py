"""Every error a client can provoke, against the real served stub gateway: OpenAI's
envelope `{"error": {"message", "type", "param", "code"}}`, the right status, never a
5xx, never a traceback, and an `x-request-id` on every response."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.served import ServedGateway

pytestmark = pytest.mark.slow

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]
_RID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


@pytest.fixture(scope="module")
def client(stub_gateway: ServedGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stub_gateway.base_url, timeout=30.0) as c:
        yield c


def check_response(r: httpx.Response) -> None:
    """What holds for every response, error or not."""
    assert r.status_code < 500, r.text
    assert "Traceback" not in r.text
    rid = r.headers.get("x-request-id")
    assert rid and _RID.match(rid), r.headers


def error(r: httpx.Response, status: int) -> dict[str, Any]:
    """Asserts OpenAI's error envelope with `status`; returns the `error` object."""
    check_response(r)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"]
    assert err["type"] == "invalid_request_error"
    assert err["param"] is None or isinstance(err["param"], str)
    assert err["code"] is None or isinstance(err["code"], str)
    return err


def post(client: httpx.Client, body: Any) -> httpx.Response:
    return client.post(CHAT, content=json.dumps(body), headers={"content-type": "application/json"})


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "stub-chat", "messages": USER, "max_tokens": 2, **fields}


# --- HTTP-level -------------------------------------------------------------------------


def test_unknown_route_is_404(client: httpx.Client) -> None:
    for path in ("/nope", "/v1/edits", "/v1/chat/completions/extra", "/v2/models"):
        err = error(client.get(path), 404)
        assert err["code"] == "not_found"
        assert path in err["message"]


def test_wrong_method_is_405_with_allow(client: httpx.Client) -> None:
    r = client.get(CHAT)
    err = error(r, 405)
    assert err["code"] == "method_not_allowed"
    assert "POST" in r.headers["allow"]
    r = client.delete("/v1/models")
    error(r, 405)
    assert "GET" in r.headers["allow"]


def test_body_too_large_is_413(client: httpx.Client) -> None:
    big = json.dumps(chat(messages=[{"role": "user", "content": "a" * (4 * 1024 * 1024)}]))
    err = error(client.post(CHAT, content=big, headers={"content-type": "application/json"}), 413)
    assert err["code"] == "request_too_large"


def test_body_too_large_without_content_length_is_413(client: httpx.Client) -> None:
    def body() -> Iterator[bytes]:
        chunk = b"a" * 65536
        yield b'{"model":"stub-chat","messages":[{"role":"user","content":"'
        for _ in range(70):  # 4.4 MiB
            yield chunk
        yield b'"}]}'

    r = client.post(CHAT, content=body(), headers={"content-type": "application/json"})
    error(r, 413)


def test_a_body_just_under_the_limit_is_accepted(client: httpx.Client) -> None:
    body = json.dumps(chat(padding="a" * (4 * 1024 * 1024 - 200)))
    assert len(body) < 4 * 1024 * 1024
    r = client.post(CHAT, content=body, headers={"content-type": "application/json"})
    check_response(r)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type_is_415(client: httpx.Client, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    r = client.post(CHAT, content=json.dumps(chat()).encode(), headers=headers)
    err = error(r, 415)
    assert err["code"] == "unsupported_media_type"


def test_json_with_a_charset_is_fine(client: httpx.Client) -> None:
    r = client.post(CHAT, content=json.dumps(chat()), headers={"content-type": "application/json; charset=utf-8"})
    check_response(r)
    assert r.status_code == 200


# --- bodies that are not a request --------------------------------------------------------


@pytest.mark.parametrize("body", [b'{"model":', b"", b"{'model': 'x'}", b"\x00\x01", b'{"model":"stub-chat",}'])
def test_malformed_json_is_400(client: httpx.Client, body: bytes) -> None:
    r = client.post(CHAT, content=body, headers={"content-type": "application/json"})
    err = error(r, 400)
    assert err["code"] == "invalid_json"


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"null", b"42"])
def test_json_that_is_not_an_object_is_400(client: httpx.Client, body: bytes) -> None:
    error(client.post(CHAT, content=body, headers={"content-type": "application/json"}), 400)


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"caf\xe9", b"\xed\xa0\x80"])
def test_invalid_utf8_is_400(client: httpx.Client, raw: bytes) -> None:
    body = b'{"model":"stub-chat","messages":[{"role":"user","content":"' + raw + b'"}]}'
    err = error(client.post(CHAT, content=body, headers={"content-type": "application/json"}), 400)
    assert err["code"] == "invalid_json"


def test_invalid_utf8_outside_strings_is_400(client: httpx.Client) -> None:
    body = b'{"model":"stub-chat","messages":[]\xff}'
    error(client.post(CHAT, content=body, headers={"content-type": "application/json"}), 400)


def test_moderately_nested_json_is_fine(client: httpx.Client) -> None:
    body = '{"model":"stub-chat","messages":[{"role":"user","content":"x"}],"max_tokens":2,"extra":'
    body += "[" * 200 + "]" * 200 + "}"
    r = client.post(CHAT, content=body, headers={"content-type": "application/json"})
    check_response(r)
    assert r.status_code == 200


@pytest.mark.parametrize("where", ["unknown_field", "tool_parameters"])
def test_deeply_nested_json_is_400(client: httpx.Client, where: str) -> None:
    deep = "[" * 5000 + "]" * 5000
    if where == "unknown_field":
        body = '{"model":"stub-chat","messages":[{"role":"user","content":"x"}],"extra":' + deep + "}"
    else:
        body = (
            '{"model":"stub-chat","messages":[{"role":"user","content":"x"}],'
            '"tools":[{"type":"function","function":{"name":"f","parameters":{"a":' + deep + "}}}]}"
        )
    error(client.post(CHAT, content=body, headers={"content-type": "application/json"}), 400)


def test_deep_nesting_where_an_object_is_expected_is_400(client: httpx.Client) -> None:
    body = '{"model":"stub-chat","messages":[{"role":"user","content":' + "[" * 5000 + "]" * 5000 + "}]}"
    err = error(client.post(CHAT, content=body, headers={"content-type": "application/json"}), 400)
    assert err["param"] == "messages[0].content[0]"


def test_duplicate_keys_do_not_5xx(client: httpx.Client) -> None:
    body = '{"model":"no-such-model","model":"stub-chat","messages":[{"role":"user","content":"x"}]}'
    r = client.post(CHAT, content=body, headers={"content-type": "application/json"})
    check_response(r)
    # the last value wins, as in most JSON parsers
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "stub-chat"
    # Each value is validated as it is read (docs/limits.md): a bad first one is a 400 naming
    # the field even though a good one follows; a body that says two things is not guessed at.
    body = '{"model":"stub-chat","messages":[],"messages":[{"role":"user","content":"x"}]}'
    err = error(client.post(CHAT, content=body, headers={"content-type": "application/json"}), 400)
    assert (err["param"], err["code"]) == ("messages", "invalid_value"), err


def test_too_many_prompt_characters_is_400(client: httpx.Client) -> None:
    err = error(post(client, chat(messages=[{"role": "user", "content": "a" * 1_000_001}])), 400)
    assert err["param"] == "messages"


@pytest.mark.parametrize(
    ("field", "literal", "status"),
    [
        ("max_tokens", "1" + "0" * 400, 200),  # capped by the passport
        ("seed", "1" + "0" * 30, 200),
        ("extra", "1" + "0" * 5000, 200),
        ("temperature", "1e400", 400),
        ("temperature", "-1e400", 400),
        ("max_tokens", "-" + "9" * 400, 400),
        ("top_p", "1" + "0" * 400, 400),
    ],
)
def test_huge_numbers(client: httpx.Client, field: str, literal: str, status: int) -> None:
    body = '{"model":"stub-chat","messages":[{"role":"user","content":"x"}],"' + field + '":' + literal + "}"
    r = client.post(CHAT, content=body, headers={"content-type": "application/json"})
    if status == 200:
        check_response(r)
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["completion_tokens"] <= 64
    else:
        assert error(r, 400)["param"] == field


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "nan"])
@pytest.mark.parametrize("field", ["temperature", "extra"])
def test_nan_and_infinity_literals_are_400(client: httpx.Client, literal: str, field: str) -> None:
    body = '{"model":"stub-chat","messages":[{"role":"user","content":"x"}],"' + field + '":' + literal + "}"
    err = error(client.post(CHAT, content=body, headers={"content-type": "application/json"}), 400)
    assert err["code"] == "invalid_json"


# --- requests that are valid JSON but not valid requests -------------------------------------


def test_missing_messages_is_400_naming_it(client: httpx.Client) -> None:
    err = error(post(client, {"model": "stub-chat"}), 400)
    assert "messages" in err["message"]


def test_missing_model_is_400_naming_it(client: httpx.Client) -> None:
    err = error(post(client, {"messages": USER}), 400)
    assert "model" in err["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "stub-chat"}, "messages"),
        ({"messages": USER}, "model"),
        ({"model": "stub-chat", "messages": [{"content": "x"}]}, "messages[0].role"),
        ({"model": "stub-chat", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ],
)
def test_a_missing_field_is_named_in_param(client: httpx.Client, body: dict[str, Any], param: str) -> None:
    assert error(post(client, body), 400)["param"] == param


@pytest.mark.parametrize("messages", [[], None, "hi", [None], ["hi"]])
def test_empty_or_malformed_messages_are_400(client: httpx.Client, messages: Any) -> None:
    err = error(post(client, chat(messages=messages)), 400)
    assert err["param"] is not None and err["param"].startswith("messages")


def test_empty_messages_list_names_messages(client: httpx.Client) -> None:
    err = error(post(client, chat(messages=[])), 400)
    assert err["param"] == "messages"


@pytest.mark.parametrize("role", ["robot", "", "USER", "function", 7])
def test_bad_role_names_the_message(client: httpx.Client, role: Any) -> None:
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "a"}, {"role": role, "content": "b"}]
    err = error(post(client, chat(messages=messages)), 400)
    assert err["param"] == "messages[2].role"


@pytest.mark.parametrize("value", [-0.1, 2.01, "hot", None, [1]])
def test_bad_temperature(client: httpx.Client, value: Any) -> None:
    body = chat(temperature=value)
    r = post(client, body)
    if value is None:  # null is "not set", as OpenAI treats it
        check_response(r)
        assert r.status_code == 200
        return
    assert error(r, 400)["param"] == "temperature"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("top_p", 1.5),
        ("max_tokens", 0),
        ("max_completion_tokens", -1),
        ("frequency_penalty", 3),
        ("presence_penalty", -3),
        ("stream", "yes"),
        ("stop", 5),
        ("top_k", -1),
        ("seed", 1.5),
    ],
)
def test_other_bad_values_name_their_field(client: httpx.Client, field: str, value: Any) -> None:
    assert error(post(client, chat(**{field: value})), 400)["param"] == field


@pytest.mark.parametrize(
    ("part", "kind"),
    [
        ({"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}, "image_url"),
        ({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}, "input_audio"),
        ({"type": "file", "file": {"file_id": "file-1"}}, "file"),
    ],
)
def test_non_text_content_parts_are_unsupported_at_the_part(
    client: httpx.Client, part: dict[str, Any], kind: str
) -> None:
    messages = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": [{"type": "text", "text": "look"}, part]},
    ]
    err = error(post(client, chat(messages=messages)), 400)
    assert err["param"] == "messages[1].content[1].type"
    assert kind in err["message"] and "not supported" in err["message"]
    assert err["code"] == "unsupported_parameter"


def test_an_unknown_content_part_type_is_400_at_the_part(client: httpx.Client) -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "video", "video": {}}]}]
    err = error(post(client, chat(messages=messages)), 400)
    assert err["param"] is not None and err["param"].startswith("messages[0].content[1]")


def test_n_above_the_gateways_bound_is_refused(client: httpx.Client) -> None:
    err = error(post(client, chat(n=17)), 400)
    assert err["param"] == "n" and "16" in err["message"]
    r = post(client, chat(n=16))
    check_response(r)
    assert r.status_code == 200
    assert [c["index"] for c in r.json()["choices"]] == list(range(16))


def test_top_logprobs_without_logprobs(client: httpx.Client) -> None:
    assert error(post(client, chat(top_logprobs=3)), 400)["param"] == "top_logprobs"


def test_tool_choice_naming_a_function_not_in_tools(client: httpx.Client) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    choice = {"type": "function", "function": {"name": "get_time"}}
    err = error(post(client, chat(model="stub-harmony", tools=tools, tool_choice=choice)), 400)
    assert err["param"] == "tool_choice"
    assert "get_time" in err["message"]


def test_tool_choice_required_without_tools(client: httpx.Client) -> None:
    assert error(post(client, chat(tool_choice="required")), 400)["param"] == "tool_choice"


def test_tools_on_a_chat_model_without_tool_support(client: httpx.Client) -> None:
    # its template has no tool syntax: a forced call can be served, a choice cannot
    tools = [{"type": "function", "function": {"name": "f"}}]
    err = error(post(client, chat(tools=tools)), 400)
    assert err["param"] == "tool_choice" and "'required'" in err["message"]
    forced = post(client, chat(tools=tools, tool_choice="required"))
    assert forced.status_code == 200, forced.text
    assert forced.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "f"


def test_logit_bias_is_unsupported(client: httpx.Client) -> None:
    err = error(post(client, chat(logit_bias={"50256": -100})), 400)
    assert (err["param"], err["code"]) == ("logit_bias", "unsupported_parameter")


def test_stream_options_without_stream(client: httpx.Client) -> None:
    assert error(post(client, chat(stream_options={"include_usage": True})), 400)["param"] == "stream_options"


def test_unknown_preset(client: httpx.Client) -> None:
    err = error(post(client, chat(preset="turbo")), 400)
    assert err["param"] == "preset"
    assert "turbo" in err["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_unknown_model_is_404_model_not_found(client: httpx.Client, stream: bool) -> None:
    err = error(post(client, chat(model="gpt-9", stream=stream)), 404)
    assert (err["code"], err["param"]) == ("model_not_found", "model")
    assert "gpt-9" in err["message"]


def test_unknown_model_card_is_404(client: httpx.Client) -> None:
    err = error(client.get("/v1/models/gpt-9"), 404)
    assert err["code"] == "model_not_found"


def test_unknown_top_level_fields_are_accepted(client: httpx.Client) -> None:
    body = chat(
        modalities=["text"],
        prediction={"type": "content", "content": "x"},
        service_tier="auto",
        web_search_options={},
        some_future_field={"nested": [1, {"a": None}]},
    )
    r = post(client, body)
    check_response(r)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]


def test_unknown_fields_inside_messages_are_accepted(client: httpx.Client) -> None:
    r = post(client, chat(messages=[{"role": "user", "content": "hi", "annotations": [], "audio": None}]))
    check_response(r)
    assert r.status_code == 200, r.text


# --- the request id -----------------------------------------------------------------------


def test_a_sane_client_request_id_is_echoed(client: httpx.Client) -> None:
    for path, method in (("/health", "GET"), ("/nope", "GET"), (CHAT, "GET"), ("/v1/models", "GET")):
        r = client.request(method, path, headers={"x-request-id": "client-id_1.2:3"})
        assert r.headers["x-request-id"] == "client-id_1.2:3"
    r = client.post(CHAT, json=chat(model="gpt-9"), headers={"x-request-id": "abc-123"})
    assert r.status_code == 404 and r.headers["x-request-id"] == "abc-123"
    r = client.post(CHAT, json=chat(), headers={"x-request-id": "abc-124"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "abc-124"
    r = client.post(CHAT, json=chat(stream=True), headers={"x-request-id": "abc-125"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "abc-125"


@pytest.mark.parametrize("bad", ["has space", "x" * 200, "semi;colon", "<script>", ""])
def test_an_insane_client_request_id_is_replaced(client: httpx.Client, bad: str) -> None:
    r = client.get("/health", headers={"x-request-id": bad})
    rid = r.headers["x-request-id"]
    assert rid != bad and _RID.match(rid)


def test_every_response_gets_its_own_request_id(client: httpx.Client) -> None:
    ids = {client.get("/health").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


def test_a_stream_carries_the_request_id_too(client: httpx.Client) -> None:
    with client.stream("POST", CHAT, json=chat(stream=True), headers={"x-request-id": "stream-rid-1"}) as r:
        assert r.status_code == 200
        assert r.headers["x-request-id"] == "stream-rid-1"
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"


# --- the admin route ------------------------------------------------------------------------


def test_unloading_an_unknown_model_is_404_model_not_found(client: httpx.Client) -> None:
    err = error(client.post("/admin/unload/gpt-9"), 404)
    assert (err["code"], err["param"]) == ("model_not_found", "model")


def test_unloading_a_model_answers_200_and_it_reloads_on_next_use(client: httpx.Client) -> None:
    r = client.post("/admin/unload/stub-chat-alias")
    check_response(r)
    assert r.status_code == 200, r.text
    assert r.json() == {"id": "stub-chat", "unloaded": True, "status": "unloaded"}
    r = post(client, chat())
    assert r.status_code == 200
    assert client.get("/v1/models/stub-chat").json()["status"] == "loaded"
