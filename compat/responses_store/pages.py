"""`GET /v1/responses/{id}/input_items`: one page of a response's input items, as OpenAI
pages them (`after` / `before` item ids, `limit` 1-100, `order` asc or desc, newest
first by default), and the query that asks for it, validated with OpenAI's `param`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from compat.responses_store.objects import ItemList
from pipelines.errors import InvalidRequest

__all__ = ["PageQuery", "page", "page_query"]

_ITEMS = msgspec.json.Decoder(list[dict[str, Any]])


class PageQuery(msgspec.Struct, frozen=True, kw_only=True):
    after: str | None = None
    before: str | None = None
    limit: int = 20
    order: Literal["asc", "desc"] = "desc"


def page_query(query: Mapping[str, str]) -> PageQuery:
    """The query string's paging parameters (others, such as `include`, are accepted and ignored)."""
    raw = query.get("limit")
    limit = 20
    if raw is not None:
        try:
            limit = int(raw)
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            raise InvalidRequest(
                f"Invalid 'limit': {raw!r}; an integer from 1 to 100.", param="limit", code="invalid_value"
            )
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest(f"Invalid 'order': {order!r}; 'asc' or 'desc'.", param="order", code="invalid_value")
    return PageQuery(after=query.get("after"), before=query.get("before"), limit=limit, order=order)  # type: ignore[arg-type]


def _index(ids: list[str], cursor: str, param: str) -> int:
    try:
        return ids.index(cursor)
    except ValueError:
        raise InvalidRequest(
            f"No input item with id '{cursor}' in this response.", param=param, code="invalid_value"
        ) from None


def page(stored: bytes, q: PageQuery) -> ItemList:
    """One page of the stored input items (a JSON array, oldest first)."""
    items = _ITEMS.decode(stored)
    if q.order == "desc":
        items.reverse()
    ids = [str(i.get("id")) for i in items]
    start, end = 0, len(items)
    if q.after is not None:
        start = _index(ids, q.after, "after") + 1
    if q.before is not None:
        end = _index(ids, q.before, "before")
    window = items[start:end]
    # with `before` alone, the page is the items just before it (paging backwards)
    data = window[-q.limit :] if q.before is not None and q.after is None else window[: q.limit]
    return ItemList(
        data=data,
        first_id=data[0].get("id") if data else None,
        last_id=data[-1].get("id") if data else None,
        has_more=len(window) > len(data),
    )
