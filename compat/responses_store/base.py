"""What a response store is: one small interface (`ResponseStore`) over the stored
records, with two backends (`sqlite.py`, `postgres.py`), and the errors it answers with.

GatewayError (pipelines/errors.py)
├── ResponseNotFound        404  response_not_found     unknown, expired, evicted or deleted
└── StorageUnavailable      503  storage_unavailable    the database cannot be reached (Retry-After)

A backend stores wire objects as the client saw them (JSON bytes), never decodes them,
and runs its blocking calls off the event loop."""

from __future__ import annotations

from typing import Protocol

import msgspec

from pipelines.errors import GatewayError

__all__ = ["ResponseNotFound", "ResponseStore", "StorageUnavailable", "StoredResponse"]


class StoredResponse(msgspec.Struct, frozen=True, kw_only=True):
    """One stored response."""

    id: str
    created_at: float
    """Unix time, seconds: what retention counts from."""
    previous_id: str | None
    """The response it continued (`previous_response_id`), whose conversation precedes it."""
    response: bytes
    """The response object's JSON, as answered."""
    input: bytes
    """Its own input items' JSON array, each item with its `id` (`input_items` lists them)."""

    @property
    def size(self) -> int:
        return len(self.response) + len(self.input)


class ResponseStore(Protocol):
    """Where stored responses live. Reads never see a response past its retention, even
    before `evict` deletes it. Every method raises `StorageUnavailable` when the database
    cannot be reached, and works again once it can."""

    backend: str
    """`sqlite` or `postgresql` (for logs and metrics)."""

    async def open(self) -> None:
        """Starts connecting (never fails: a database that is down is found out by the first operation)."""

    async def close(self) -> None: ...

    async def put(self, record: StoredResponse) -> None:
        """Stores `record` (replacing one of the same id), committed when it returns."""

    async def get(self, response_id: str) -> StoredResponse | None: ...

    async def delete(self, response_id: str) -> bool:
        """Whether there was such a response."""

    async def input_items(self, response_id: str) -> bytes | None:
        """The response's input items (`StoredResponse.input`), without its response object."""

    async def evict(self) -> int:
        """Deletes what is past its retention, then the oldest until the size bound holds;
        returns how many responses went."""


class ResponseNotFound(GatewayError):
    status = 404
    code = "response_not_found"

    def __init__(self, response_id: str) -> None:
        super().__init__(f"Response with id '{response_id}' not found.", param="response_id")


class StorageUnavailable(GatewayError):
    """The store's database is down or unreachable: the request can be retried once it is back."""

    status = 503
    code = "storage_unavailable"
    retry_after = 1.0

    def __init__(self) -> None:
        super().__init__("The response store is unavailable; retry shortly.")
