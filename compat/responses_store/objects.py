"""What the stored-response routes answer with, besides the response object itself."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = ["ItemList", "ResponseDeleted"]


class ItemList(msgspec.Struct, kw_only=True):
    """OpenAI's list object (`first_id`/`last_id` are null on an empty page)."""

    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool


class ResponseDeleted(msgspec.Struct, kw_only=True):
    """`DELETE /v1/responses/{id}`: OpenAI's deletion object."""

    id: str
    object: Literal["response.deleted"] = "response.deleted"
    deleted: bool = True
