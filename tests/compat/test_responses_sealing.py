"""Reasoning sealed for stateless clients (`include: ["reasoning.encrypted_content"]`):
the seal itself, and its way through the Responses wire in both directions."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from compat.responses_wire import ReasoningSeal, decode_responses_request, to_internal
from pipelines.types import Delta, DeltaKind, Message, ToolCall
from tests.compat.test_responses_wire import response, run
from tests.support.responses import check_stream

SECRET = "f" * 16 + "0123456789abcdef"
TEXT = "Need the weather in Zürich 🌦; call the tool."


def test_a_sealed_text_opens_with_the_same_secret_only() -> None:
    one, same = ReasoningSeal(SECRET), ReasoningSeal(SECRET)  # two processes sharing the key
    token = one.seal(TEXT)
    assert token.startswith("mia1.") and TEXT not in token
    assert same.open(token) == one.open(token) == TEXT
    assert one.seal(TEXT) != token  # a fresh nonce each time
    assert ReasoningSeal(SECRET.upper()).open(token) is None
    assert not one.ephemeral and ReasoningSeal().ephemeral
    assert ReasoningSeal().open(token) is None and ReasoningSeal().open(ReasoningSeal().seal(TEXT)) is None


def test_a_changed_token_never_opens() -> None:
    seal = ReasoningSeal(SECRET)
    token = seal.seal(TEXT)
    raw = bytearray(base64.urlsafe_b64decode(token[5:] + "=" * (-len(token[5:]) % 4)))
    for i in range(len(raw)):  # every byte: nonce, ciphertext and tag
        changed = bytearray(raw)
        changed[i] ^= 0x01
        assert seal.open("mia1." + base64.urlsafe_b64encode(bytes(changed)).decode().rstrip("=")) is None
    for bad in ("", "mia1.", "mia1.!!!!", "mia1.AAAA", token[:-4], token + "AAAA", token[5:], "gAAAAABo-openai"):
        assert seal.open(bad) is None, bad


def translated(seal: ReasoningSeal | None, **body: Any) -> Any:
    body = {"model": "m", "input": "hi", **body}
    return to_internal(decode_responses_request(json.dumps(body).encode()), "req_1", seal=seal)


def _chain(reasoning: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "Weather?"},
        {"type": "reasoning", "summary": [], **reasoning},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "18 C"},
    ]


@pytest.mark.parametrize(
    ("reasoning", "sealed_with", "expected", "unopened"),
    [
        ({}, SECRET, TEXT, 0),  # opened: only the sealed text was sent
        ({"content": [{"type": "reasoning_text", "text": "edited"}]}, SECRET, TEXT, 0),  # the sealed text wins
        ({"content": [{"type": "reasoning_text", "text": "clear"}]}, "x" * 32, "clear", 1),  # another key
        ({"summary": [{"type": "summary_text", "text": "short"}]}, "x" * 32, "short", 1),
        ({}, "x" * 32, None, 1),  # nothing readable: left out
    ],
)
def test_reasoning_sent_back_sealed_is_opened_into_the_turn(
    reasoning: dict[str, Any], sealed_with: str, expected: str | None, unopened: int
) -> None:
    item = {**reasoning, "encrypted_content": ReasoningSeal(sealed_with).seal(TEXT)}
    t = translated(ReasoningSeal(SECRET), input=_chain(item))
    assert t.request.messages[1] == Message(
        role="assistant", content="", reasoning=expected, tool_calls=(ToolCall("c1", "get_weather", "{}"),)
    )
    assert t.unopened_reasoning == unopened


def test_the_answers_reasoning_is_sealed_only_when_include_asks() -> None:
    seal = ReasoningSeal(SECRET)
    plain = response(translated(seal), content="Hi!", reasoning=TEXT)
    assert plain["output"][0]["encrypted_content"] is None
    asked = translated(seal, include=["reasoning.encrypted_content"], store=False)
    out = response(asked, content="Hi!", reasoning=TEXT)
    item = out["output"][0]
    assert item["type"] == "reasoning" and item["content"][0]["text"] == TEXT
    assert seal.open(item["encrypted_content"]) == TEXT
    # streamed: the item's `done` event and the final response carry it
    stream = run(
        asked, [Delta(DeltaKind.REASONING, TEXT), Delta(DeltaKind.CONTENT, "Hi!")], content="Hi!", reasoning=TEXT
    )
    final = check_stream(stream)
    [done] = [
        e["item"] for e in stream if e["type"] == "response.output_item.done" and e["item"]["type"] == "reasoning"
    ]
    assert seal.open(done["encrypted_content"]) == TEXT and final["output"][0] == done
    [added] = [
        e["item"] for e in stream if e["type"] == "response.output_item.added" and e["item"]["type"] == "reasoning"
    ]
    assert added["encrypted_content"] is None  # nothing to seal yet
