"""The response store's backends on real databases (an SQLite file here; PostgreSQL in
test_responses_postgres.py runs the same checks), and the paging of input items."""

from __future__ import annotations

import json
import time
import typing
from pathlib import Path

import msgspec
import pytest

from compat.responses_store import PageQuery, ResponseStore, SQLiteStore, StoredResponse, page
from compat.responses_store.records import input_items
from compat.responses_wire.request import InputItem, ResponsesRequest
from pipelines.errors import InvalidRequest

DAY = 86400.0


def stored(rid: str, *, age: float = 0.0, size: int = 10, previous: str | None = None) -> StoredResponse:
    return StoredResponse(
        id=rid,
        created_at=time.time() - age,
        previous_id=previous,
        response=b"{" + b" " * (size - 2) + b"}",
        input=b"",
    )


async def check_backend(store: ResponseStore) -> None:
    """What every backend does: put/get/replace/delete, input items, retention at read
    time, eviction by retention then by size (oldest first)."""
    one = stored("resp_1", previous=None)
    await store.put(one)
    assert await store.get("resp_1") == one
    assert await store.input_items("resp_1") == b""
    replaced = msgspec.structs.replace(one, response=b'{"a":1}', input=b"[]")
    await store.put(replaced)
    assert await store.get("resp_1") == replaced and await store.input_items("resp_1") == b"[]"
    assert await store.delete("resp_1") is True
    assert await store.get("resp_1") is None and await store.input_items("resp_1") is None
    assert await store.delete("resp_1") is False
    # past retention (one day here): unreadable at once, deleted by the next eviction
    await store.put(stored("resp_old", age=2 * DAY))
    assert await store.get("resp_old") is None and await store.delete("resp_old") is False
    # size: 40 bytes fit; five of 10 bytes, oldest first: the oldest go
    for n in range(5):
        await store.put(stored(f"resp_{n}", age=100.0 - n))
    assert await store.evict() == 2  # the expired one and the oldest of the five
    assert [await store.get(f"resp_{n}") is not None for n in range(5)] == [False, True, True, True, True]
    assert await store.evict() == 0


async def test_sqlite_backend(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "data" / "responses.sqlite3", retention=DAY, max_bytes=40, timeout=5.0)
    await store.open()
    try:
        await check_backend(store)
    finally:
        await store.close()


ITEMS = json.dumps([{"id": f"item_{n}", "type": "message"} for n in range(5)]).encode()


@pytest.mark.parametrize(
    ("query", "ids", "has_more"),
    [
        (PageQuery(), [4, 3, 2, 1, 0], False),
        (PageQuery(order="asc", limit=2), [0, 1], True),
        (PageQuery(order="asc", limit=2, after="item_1"), [2, 3], True),
        (PageQuery(order="asc", limit=2, after="item_3"), [4], False),
        (PageQuery(limit=2, after="item_3"), [2, 1], True),
        (PageQuery(order="asc", limit=2, before="item_4"), [2, 3], True),
        (PageQuery(order="asc", after="item_0", before="item_3"), [1, 2], False),
    ],
)
def test_paging(query: PageQuery, ids: list[int], has_more: bool) -> None:
    got = page(ITEMS, query)
    assert [i["id"] for i in got.data] == [f"item_{n}" for n in ids] and got.has_more is has_more
    assert (got.first_id, got.last_id) == (got.data[0]["id"], got.data[-1]["id"])


def test_an_empty_page_and_an_unknown_cursor() -> None:
    empty = page(b"[]", PageQuery())
    assert empty.data == [] and empty.first_id is None and empty.has_more is False
    with pytest.raises(InvalidRequest) as exc:
        page(ITEMS, PageQuery(before="nope"))
    assert exc.value.param == "before"


def test_every_kind_of_input_item_is_stored_with_an_id() -> None:
    """A stored request lists its input items back, each with an id of its kind's prefix:
    an `additional_tools` item (Codex sends them) had no prefix and made the request a 500."""
    kinds = [member.__struct_config__.tag for member in typing.get_args(InputItem)]
    wire = {
        "message": {"role": "user", "content": "hi"},
        "function_call": {"call_id": "c1", "name": "f", "arguments": "{}"},
        "function_call_output": {"call_id": "c1", "output": "ok"},
        "reasoning": {"summary": []},
        "custom_tool_call": {"call_id": "c2", "name": "g", "input": "x"},
        "custom_tool_call_output": {"call_id": "c2", "output": "ok"},
        "additional_tools": {"role": "developer", "tools": []},
        "item_reference": {"id": "msg_1"},
    }
    assert sorted(wire) == sorted(kinds)
    request = msgspec.convert(
        {"model": "m", "input": [{"type": kind, **fields} for kind, fields in wire.items()]}, ResponsesRequest
    )
    stored = json.loads(input_items(request))
    assert [item["type"] for item in stored] == list(wire)
    assert all(isinstance(item["id"], str) and item["id"] for item in stored)
    assert stored[6]["id"].startswith("at_")
