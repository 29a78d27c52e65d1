"""Reading a Responses stream (`event:` / `data:` pairs) and checking what every stream
keeps, with the openai SDK's own models: for the wire's unit tests and the served ones."""

from __future__ import annotations

import json
from typing import Any

import pydantic
from openai.types.responses import ResponseStreamEvent

__all__ = ["EVENT", "check_stream", "events"]

EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)


def events(data: bytes) -> list[dict[str, Any]]:
    """Parses `event:` / `data:` pairs, checking that each names its own type, and validates
    every event with the SDK's models."""
    out = []
    for block in data.decode().split("\n\n"):
        if not block:
            continue
        name, payload = block.split("\n")
        assert name.startswith("event: ") and payload.startswith("data: "), block
        event = json.loads(payload.removeprefix("data: "))
        assert event["type"] == name.removeprefix("event: ")
        EVENT.validate_python(event)
        out.append(event)
    return out


def check_stream(stream: list[dict[str, Any]]) -> dict[str, Any]:
    """The invariants every stream keeps; returns the final response."""
    assert [e["sequence_number"] for e in stream] == list(range(len(stream)))
    assert [e["type"] for e in stream[:2]] == ["response.created", "response.in_progress"]
    final = stream[-1]["response"]
    texts: dict[tuple[str, int], str] = {}
    where = {e["item"]["id"]: e["output_index"] for e in stream if e["type"] == "response.output_item.added"}
    for e in stream:
        if "item_id" in e:  # every event of an item says the index it was added at
            assert where[e["item_id"]] == e["output_index"], e
        if "content_index" in e:
            assert e["content_index"] == 0, e  # one part per item: its text
        if e["type"].endswith(".delta"):
            key = (e["item_id"], e.get("content_index", -1))
            texts[key] = texts.get(key, "") + e["delta"]
        elif e["type"] in ("response.output_text.done", "response.reasoning_text.done"):
            assert texts.pop((e["item_id"], e["content_index"]), "") == e["text"]
        elif e["type"] == "response.function_call_arguments.done":
            assert texts.pop((e["item_id"], -1), "") == e["arguments"]
        elif e["type"] == "response.custom_tool_call_input.done":
            assert texts.pop((e["item_id"], -1), "") == e["input"]
        elif e["type"] == "response.output_item.done":
            assert final["output"][e["output_index"]] == e["item"]
    assert not texts
    added = [e["output_index"] for e in stream if e["type"] == "response.output_item.added"]
    assert added == list(range(len(final["output"])))
    return final
