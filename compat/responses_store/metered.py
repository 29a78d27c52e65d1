"""Any store, timed: each operation is a `StorageOperation` event (the storage metrics:
latency by operation and backend, and failures)."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TypeVar

from compat.responses_store.base import ResponseStore, StoredResponse
from pipelines.events import EventBus, StorageOperation

__all__ = ["MeteredStore"]

T = TypeVar("T")


class MeteredStore:
    """`ResponseStore` around `store`, reporting every operation on `bus`."""

    def __init__(self, store: ResponseStore, bus: EventBus) -> None:
        self._store = store
        self._bus = bus
        self.backend = store.backend

    async def _timed(self, operation: str, call: Awaitable[T]) -> T:
        started = time.perf_counter()
        ok = False
        try:
            result = await call
            ok = True
            return result
        finally:
            seconds = time.perf_counter() - started
            self._bus.emit(StorageOperation(operation=operation, backend=self.backend, seconds=seconds, ok=ok))

    async def open(self) -> None:
        await self._store.open()

    async def close(self) -> None:
        await self._store.close()

    async def put(self, record: StoredResponse) -> None:
        await self._timed("put", self._store.put(record))

    async def get(self, response_id: str) -> StoredResponse | None:
        return await self._timed("get", self._store.get(response_id))

    async def delete(self, response_id: str) -> bool:
        return await self._timed("delete", self._store.delete(response_id))

    async def input_items(self, response_id: str) -> bytes | None:
        return await self._timed("input_items", self._store.input_items(response_id))

    async def evict(self) -> int:
        return await self._timed("evict", self._store.evict())
