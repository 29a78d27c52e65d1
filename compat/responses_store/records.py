"""Stored responses <-> the wire: what a response stores (its object and its own input
items, each given an `id` as OpenAI gives them), and the conversation a
`previous_response_id` stands for (every earlier response's input and output items, oldest
first; their `instructions` are not carried over, as OpenAI does not)."""

from __future__ import annotations

import time
from typing import Any

import msgspec

from compat.refusals import PreviousResponseNotFound
from compat.responses_store.base import ResponseStore, StoredResponse
from compat.responses_wire.objects import ResponseObject
from compat.responses_wire.request import InputItem, MessageItem, ResponsesRequest
from compat.responses_wire.translate import new_item_id

__all__ = ["MAX_CHAIN", "conversation", "input_items", "record"]

MAX_CHAIN = 10_000
"""The most responses one `previous_response_id` chain may hold (each is one read)."""

_PREFIX = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "reasoning": "rs",
    "custom_tool_call": "ctc",
    "custom_tool_call_output": "ctco",
    "additional_tools": "at",
    "item_reference": "ref",
}
"""The id prefix of each input item type (every member of `InputItem`: a request may
store any of them)."""
_STATUS = frozenset({"message", "function_call", "function_call_output"})
"""Item types that OpenAI lists with a `status`."""


class _Output(msgspec.Struct):
    """A stored response object, read back for its output items only (as input items)."""

    output: list[InputItem] = []


_ITEMS = msgspec.json.Decoder(list[InputItem])
_OUTPUT = msgspec.json.Decoder(_Output)
_ENCODER = msgspec.json.Encoder()


def _item(item: InputItem) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(item)
    kind = out["type"]
    out.setdefault("id", new_item_id(_PREFIX[kind]))
    if isinstance(item, MessageItem) and isinstance(item.content, str):
        part = "output_text" if item.role == "assistant" else "input_text"
        out["content"] = [
            {"type": part, "text": item.content, **({"annotations": []} if part == "output_text" else {})}
        ]
    if kind in _STATUS:
        out.setdefault("status", "completed")
    return out


def input_items(req: ResponsesRequest) -> bytes:
    """The request's own input items as stored and listed: a string input is one user
    message; every item has an `id`."""
    items = req.input if not isinstance(req.input, str) else [MessageItem(role="user", content=req.input)]
    return _ENCODER.encode([_item(i) for i in items])


def record(response: ResponseObject, items: bytes, created_at: float | None = None) -> StoredResponse:
    """What `response` stores; `created_at` (retention counts from it): now, unless this is
    a later state of a response stored before (a background response's)."""
    return StoredResponse(
        id=response.id,
        created_at=time.time() if created_at is None else created_at,
        previous_id=response.previous_response_id,
        response=_ENCODER.encode(response),
        input=items,
    )


async def conversation(store: ResponseStore, previous_id: str) -> list[InputItem]:
    """The items that precede a request continuing `previous_id`; `PreviousResponseNotFound`
    when it, or any response before it in its chain, is unknown, expired or deleted."""
    chain: list[StoredResponse] = []
    rid: str | None = previous_id
    while rid is not None and len(chain) < MAX_CHAIN:
        found = await store.get(rid)
        if found is None:
            raise PreviousResponseNotFound(previous_id)
        chain.append(found)
        rid = found.previous_id
    items: list[InputItem] = []
    for stored in reversed(chain):
        items += _ITEMS.decode(stored.input)
        items += _OUTPUT.decode(stored.response).output
    return items
