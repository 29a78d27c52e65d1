"""`store: false` with `include: ["reasoning.encrypted_content"]`, across gateway processes
that share nothing but `MIA_REASONING_KEY`: the reasoning one process sealed is opened by
another and rendered back into the conversation (the stub's answer is a digest of its
prompt, so equal answers mean equal prompts); a process with another key leaves it out and
says so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import ResponseFunctionToolCall, ResponseReasoningItem

from tests.support.responses import check_stream, events
from tests.support.served import ServedGateway, serve

pytestmark = pytest.mark.slow

HARMONY = Path(__file__).resolve().parents[1] / "data" / "harmony"
KEY = "5c1f0e2b9a7d4e6f8a0b1c2d3e4f5a6b"
WEATHER: list[Any] = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
CONFIG = f"""
[[models]]
id = "rs-call"
role = "primary"
format = "harmony"
provider = "replay"
replay_file = "{HARMONY / "tool_call.txt"}"

[[models]]
id = "stub-harmony"
role = "primary"
format = "harmony"
provider = "stub"
"""
REASONING = "Need the weather; call the tool."
"""The analysis of tool_call.txt."""


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServedGateway]]:
    """`a` and `b` share the key; `own` has none set (a key of its own)."""
    keyed = {"MIA_REASONING_KEY": KEY}
    with (
        serve(CONFIG, tmp_path_factory.mktemp("gw-a"), env=keyed) as a,
        serve(CONFIG, tmp_path_factory.mktemp("gw-b"), env=keyed) as b,
        serve(CONFIG, tmp_path_factory.mktemp("gw-own")) as own,
    ):
        yield {"a": a, "b": b, "own": own}


def _call(gw: ServedGateway) -> tuple[ResponseReasoningItem, ResponseFunctionToolCall]:
    client = openai.OpenAI(base_url=gw.api_url, api_key="unused", max_retries=0)
    out = client.responses.create(
        model="rs-call",
        input="Weather in Zürich?",
        tools=WEATHER,
        store=False,
        include=["reasoning.encrypted_content"],
        reasoning={"summary": "auto"},
    )
    reasoning, call = out.output
    assert isinstance(reasoning, ResponseReasoningItem) and isinstance(call, ResponseFunctionToolCall)
    assert reasoning.encrypted_content and REASONING not in reasoning.encrypted_content
    return reasoning, call


def _answer(gw: ServedGateway, call: ResponseFunctionToolCall, reasoning: dict[str, Any] | None) -> httpx.Response:
    """The follow-up a stateless client sends: the question, the reasoning item (as given),
    the call and its output; the stub answers."""
    items: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Zürich?"}]
    if reasoning is not None:
        items.append({"type": "reasoning", "summary": [], **reasoning})
    items += [
        call.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": call.call_id, "output": '{"celsius": 18}'},
    ]
    body = {"model": "stub-harmony", "input": items, "tools": WEATHER, "store": False}
    r = httpx.post(f"{gw.api_url}/responses", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r


def _text(r: httpx.Response) -> str:
    return "".join(part["text"] for item in r.json()["output"] if item["type"] == "message" for part in item["content"])


def test_sealed_reasoning_continues_on_another_process_with_the_key(gateways: dict[str, ServedGateway]) -> None:
    reasoning, call = _call(gateways["a"])
    sealed = {"id": reasoning.id, "encrypted_content": reasoning.encrypted_content}
    b = gateways["b"]
    opened = _answer(b, call, sealed)
    assert "x-mia-reasoning-unopened" not in opened.headers
    clear = _answer(b, call, {"content": [{"type": "reasoning_text", "text": REASONING}]})
    without = _answer(b, call, None)
    # the prompt on b held the reasoning a sealed: the same prompt as with it in the clear
    assert _text(opened) == _text(clear) != _text(without)


def test_a_process_with_another_key_leaves_the_reasoning_out_and_says_so(gateways: dict[str, ServedGateway]) -> None:
    reasoning, call = _call(gateways["a"])
    sealed = {"id": reasoning.id, "encrypted_content": reasoning.encrypted_content}
    own = gateways["own"]
    r = _answer(own, call, sealed)
    assert r.headers["x-mia-reasoning-unopened"] == "1"
    assert _text(r) == _text(_answer(own, call, None))
    # and with no key set, a process opens what it sealed itself, and only that
    mine, my_call = _call(own)
    back = _answer(own, my_call, {"encrypted_content": mine.encrypted_content})
    assert "x-mia-reasoning-unopened" not in back.headers
    assert _text(back) == _text(_answer(own, my_call, {"content": [{"type": "reasoning_text", "text": REASONING}]}))
    assert (
        _answer(gateways["b"], my_call, {"encrypted_content": mine.encrypted_content}).headers[
            "x-mia-reasoning-unopened"
        ]
        == "1"
    )


def test_a_stream_seals_the_reasoning_in_its_done_events(gateways: dict[str, ServedGateway]) -> None:
    body = {
        "model": "rs-call",
        "input": "Weather in Zürich?",
        "tools": WEATHER,
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
    }
    with httpx.stream("POST", f"{gateways['a'].api_url}/responses", json=body, timeout=60) as r:
        assert r.status_code == 200
        sent = events(r.read())
    final = check_stream(sent)
    [done] = [e["item"] for e in sent if e["type"] == "response.output_item.done" and e["item"]["type"] == "reasoning"]
    assert done["encrypted_content"] and final["output"][0] == done
    # b opens what a streamed
    call = ResponseFunctionToolCall.model_validate(final["output"][1])
    opened = _answer(gateways["b"], call, {"encrypted_content": done["encrypted_content"]})
    clear = _answer(gateways["b"], call, {"content": [{"type": "reasoning_text", "text": REASONING}]})
    assert "x-mia-reasoning-unopened" not in opened.headers and _text(opened) == _text(clear)
