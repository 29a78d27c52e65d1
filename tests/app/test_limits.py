"""Request limits against a real `mia-gateway serve` with small `[server]` bounds: each
breach is a 4xx in OpenAI's envelope naming the field in `param`, never a 5xx, never a
hang; the value at the bound itself is accepted. Hostile bodies (wrong content type,
invalid UTF-8, 100k-deep nesting, duplicate keys, huge numbers, NaN) are 4xx too.

(tests/app/test_http_errors.py covers the HTTP layer with the default bounds; this file
is about the configurable bounds and the worst bodies.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from compat.requests import HUGE_TOKEN_LIMIT
from tests.support.configs import STUB_MODELS
from tests.support.logs import events
from tests.support.served import ServedGateway, serve

pytestmark = pytest.mark.slow

MAX_BODY = 256 * 1024
LIMITS = f"""max_body_bytes = {MAX_BODY}
max_messages = 4
max_prompt_chars = 400
max_stop = 2
max_stop_chars = 8
max_tools = 2
max_tool_schema_bytes = 256
"""
CHAT = "/v1/chat/completions"
TIMEOUT = 15.0  # a hang fails the test instead of blocking the run


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    cfg = STUB_MODELS.replace("[server]\n", f"[server]\n{LIMITS}", 1)
    with serve(cfg, tmp_path_factory.mktemp("limits")) as served:
        yield served


@pytest.fixture(scope="module")
def client(gw: ServedGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.base_url, timeout=TIMEOUT) as c:
        yield c


def user(text: str = "hi") -> dict[str, Any]:
    return {"role": "user", "content": text}


def chat(model: str = "stub-chat", **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [user()], "max_tokens": 2, **fields}


def tool(name: str = "f", parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": name}
    if parameters is not None:
        fn["parameters"] = parameters
    return {"type": "function", "function": fn}


def send(client: httpx.Client, body: Any, content_type: str | None = "application/json") -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": content_type} if content_type is not None else {}
    return client.post(CHAT, content=raw, headers=headers)


def ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    return r.json()


def rejected(r: httpx.Response, status: int = 400) -> dict[str, Any]:
    """OpenAI's envelope with `status`; returns the `error` object."""
    assert r.status_code < 500, r.text
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers.get("x-request-id")
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert err["type"] == "invalid_request_error"
    assert isinstance(err["message"], str) and err["message"]
    assert "Traceback" not in r.text
    return err


# --- configurable bounds: at the bound 200, past it 400 naming the field ------------------

# (case, body at the bound, body past it, param)
BOUNDS: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("messages", chat(messages=[user()] * 4), chat(messages=[user()] * 5), "messages"),
    ("prompt_chars", chat(messages=[user("x" * 400)]), chat(messages=[user("x" * 401)]), "messages"),
    (
        "prompt_chars_across_messages",
        chat(messages=[user("x" * 200), user("y" * 200)]),
        chat(messages=[user("x" * 200), user("y" * 201)]),
        "messages",
    ),
    (
        "prompt_chars_count_reasoning",
        chat(messages=[user("x" * 100), {"role": "assistant", "content": "a" * 100, "reasoning_content": "r" * 200}]),
        chat(messages=[user("x" * 100), {"role": "assistant", "content": "a" * 100, "reasoning_content": "r" * 201}]),
        "messages",
    ),
    ("stop_count", chat(stop=["aa", "bb"]), chat(stop=["aa", "bb", "cc"]), "stop"),
    ("stop_length", chat(stop="12345678"), chat(stop="123456789"), "stop[0]"),
    ("stop_length_indexed", chat(stop=["ok", "12345678"]), chat(stop=["ok", "123456789"]), "stop[1]"),
    ("tools_count", chat("stub-harmony", tools=[tool("a"), tool("b")]), chat(tools=[tool(c) for c in "abc"]), "tools"),
    (
        "tool_schema_bytes",
        chat("stub-harmony", tools=[tool("a"), tool("b", {"type": "object", "description": "d" * 200})]),
        chat("stub-harmony", tools=[tool("a"), tool("b", {"type": "object", "description": "d" * 250})]),
        "tools[1].function.parameters",
    ),
]


@pytest.mark.parametrize(("case", "at", "past", "param"), BOUNDS, ids=[b[0] for b in BOUNDS])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_bound_is_inclusive_and_its_breach_names_the_field(
    client: httpx.Client, case: str, at: dict[str, Any], past: dict[str, Any], param: str, stream: bool
) -> None:
    if stream:
        r = send(client, {**at, "stream": True})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.text.rstrip().endswith("data: [DONE]")
    else:
        ok(send(client, at))
    # a breach is refused before any stream starts: a plain JSON 400, not SSE
    err = rejected(send(client, {**past, "stream": stream}))
    assert err["param"] == param, err


def test_body_size(client: httpx.Client) -> None:
    padding = "x" * (MAX_BODY - 200)
    # the body cap is on bytes, before any decoding: an unknown field counts as much as a message
    assert len(json.dumps(chat(pad=padding))) < MAX_BODY
    ok(send(client, chat(pad=padding)))
    err = rejected(send(client, chat(pad=padding + "x" * 400)), 413)
    assert err["code"] == "request_too_large"


def test_body_size_without_content_length(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model":"stub-chat","messages":[{"role":"user","content":"hi"}],"pad":"'
        for _ in range(MAX_BODY // 4096 + 2):
            yield b"x" * 4096
        yield b'"}'

    r = client.post(CHAT, content=chunks(), headers={"content-type": "application/json"})
    assert rejected(r, 413)["code"] == "request_too_large"


# --- sampling ranges -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n", 0),
        ("n", -1),
        ("n", 129),
        ("n", 17),  # valid OpenAI, above the gateway's `max_choices` (16)
        ("max_tokens", 0),
        ("max_tokens", -1),
        ("max_tokens", -(10**30)),
        ("max_completion_tokens", 0),
        ("max_completion_tokens", -5),
        ("top_logprobs", 21),
        ("top_logprobs", -1),
        ("top_logprobs", 10**6),
    ],
)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_out_of_range_values_name_their_field(client: httpx.Client, field: str, value: int, stream: bool) -> None:
    body = chat(stream=stream, **{field: value})
    if field == "top_logprobs":
        body["logprobs"] = True
    err = rejected(send(client, body))
    assert err["param"] == field, err


@pytest.mark.parametrize("value", [65, 10**9, 2**63, 10**400])
def test_a_huge_max_tokens_is_capped_not_refused(client: httpx.Client, value: int) -> None:
    # DESIGN: effective = min(requested, passport cap, gateway cap); stub-chat's passport cap is 64
    body = json.dumps({"model": "stub-chat", "messages": [user()]})[:-1] + f',"max_tokens":{value}}}'
    out = ok(send(client, body.encode()))
    assert out["usage"]["completion_tokens"] <= 64


# --- hostile bodies --------------------------------------------------------------------

HEAD = b'{"model":"stub-chat","messages":[{"role":"user","content":"hi"}],"max_tokens":2,'


@pytest.mark.parametrize("content_type", ["text/plain", "multipart/form-data; boundary=x", "application/xml", None])
def test_wrong_content_type_is_415(client: httpx.Client, content_type: str | None) -> None:
    assert rejected(send(client, chat(), content_type), 415)["code"] == "unsupported_media_type"


@pytest.mark.parametrize("content_type", ["application/jsonx", "application/json-seq"])
def test_a_lookalike_content_type_is_415(client: httpx.Client, content_type: str) -> None:
    assert rejected(send(client, chat(), content_type), 415)["code"] == "unsupported_media_type"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("raw", [b"\xff\xfe", b"\xc3", b"\xed\xa0\x80"], ids=["ff-fe", "truncated", "surrogate"])
def test_invalid_utf8_is_400(client: httpx.Client, raw: bytes, stream: bool) -> None:
    body = b'{"model":"stub-chat","stream":' + (b"true" if stream else b"false") + b',"messages":[{"role":"user",'
    body += b'"content":"' + raw + b'"}]}'
    assert rejected(send(client, body))["code"] == "invalid_json"


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_100k_nested_arrays_where_a_message_belongs_is_400(client: httpx.Client) -> None:
    body = b'{"model":"stub-chat","messages":' + _nested(100_000) + b"}"
    assert len(body) < MAX_BODY
    err = rejected(send(client, body))
    assert err["param"] == "messages[0]"


@pytest.mark.parametrize(
    "body",
    [
        HEAD + b'"ignored":' + _nested(100_000) + b"}",
        HEAD + b'"tools":[{"type":"function","function":{"name":"f","parameters":{"a":' + _nested(100_000) + b"}}}]}",
        HEAD + b'"ignored":' + b'{"a":' * 40_000 + b"1" + b"}" * 40_000 + b"}",
        HEAD + b'"ignored":' + b"[" * 100_000,
    ],
    ids=["ignored-field", "tool-parameters", "objects", "unclosed"],
)
def test_100k_nested_values_are_400(client: httpx.Client, body: bytes) -> None:
    assert len(body) < MAX_BODY
    err = rejected(send(client, body))
    assert err["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("body", "expect"),
    [
        (b'{"model":"nope","model":"stub-chat","messages":[{"role":"user","content":"hi"}],"max_tokens":2}', 200),
        (b'{"model":"stub-chat","messages":[{"role":"user","content":"hi"}],"max_tokens":2,"max_tokens":0}', 400),
        (b'{"model":"stub-chat","messages":[{"role":"user","content":"hi","role":"wizard"}]}', 400),
    ],
)
def test_duplicate_keys_are_never_a_5xx(client: httpx.Client, body: bytes, expect: int) -> None:
    r = send(client, body)
    if expect == 200:
        assert ok(r)["model"] == "stub-chat"  # the last value wins, as in most JSON parsers
    else:
        rejected(r)


@pytest.mark.parametrize(
    ("field", "literal"),
    [
        ("temperature", b"1e400"),
        ("temperature", b"-1e400"),
        ("temperature", b"1" + b"0" * 400),
        ("top_p", b"1e400"),
        ("n", b"1" + b"0" * 400),
        ("top_logprobs", b"1" + b"0" * 400),
        ("max_tokens", b"-1" + b"0" * 400),
        ("max_tokens", b"-1" + b"0" * 5000),  # past Python's int-to-str digit limit
        ("max_completion_tokens", b"-1" + b"0" * 5000),
        ("max_completion_tokens", b"0"),
        ("seed", b"1" + b"0" * 5000),
        ("max_tokens", b"1e400"),
    ],
)
def test_huge_numbers_are_400_naming_the_field(client: httpx.Client, field: str, literal: bytes) -> None:
    err = rejected(send(client, HEAD + b'"' + field.encode() + b'":' + literal + b"}"))
    assert err["param"] == field, err


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize(
    ("digits", "requested"),
    [(400, 10**400), (5000, HUGE_TOKEN_LIMIT)],  # 5,000 digits: past Python's int-to-str digit limit
    ids=["400-digits", "5000-digits"],
)
def test_a_huge_output_limit_is_capped_not_refused(
    client: httpx.Client, gw: ServedGateway, field: str, digits: int, requested: int
) -> None:
    # docs/limits.md: max_tokens above the caps is capped, not refused, however many digits
    r = send(client, HEAD + b'"' + field.encode() + b'":1' + b"0" * digits + b"}")
    assert ok(r)["choices"][0]["message"]["content"]
    rid = r.headers["x-request-id"]
    [started] = [e for e in events(gw.log(), "GenerationStarted") if e["request_id"] == rid]
    sampling = started["sampling"]
    # stub-chat's passport cap is 64 (no gateway cap here): min(requested, 64, none)
    assert (sampling["requested_max_tokens"], sampling["max_tokens"]) == (requested, 64), sampling
    assert (sampling["cap_applied"], sampling["cap_source"]) == (True, "passport"), sampling


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf"])
@pytest.mark.parametrize("field", ["temperature", "ignored"])
def test_nan_and_infinity_literals_are_400(client: httpx.Client, literal: bytes, field: str) -> None:
    err = rejected(send(client, HEAD + b'"' + field.encode() + b'":' + literal + b"}"))
    assert err["code"] == "invalid_json"


def test_the_gateway_is_unharmed(client: httpx.Client, gw: ServedGateway) -> None:
    assert gw.proc.poll() is None
    assert client.get("/health").status_code == 200
    ok(send(client, chat()))
    metrics = client.get("/metrics").text
    for model in ("stub-chat", "stub-harmony"):
        assert f'mia_num_requests_running{{model="{model}"}} 0.0' in metrics
        assert f'mia_num_requests_waiting{{model="{model}"}} 0.0' in metrics
