"""The default store: SQLite, one file in the gateway's data folder, created on first use.

WAL lets readers (another process on the same file, a backup) run beside the writer. A
commit is in the WAL file when `put` returns, so a completed response survives a crash of
the gateway; `synchronous` (`[storage] sqlite_synchronous`) decides whether it also waits
for the disk. `full` (the default) survives a power loss too, at an fsync per put: side by
side on this project's machines, 0.2-0.5 ms a put either way while the disk was quiet, but
3-10 ms (about 300 puts/s at most) against `normal`'s 0.4 ms while other processes wrote.
sqlite3 blocks, so every call runs on one thread of the store's own,
which also serialises them (one connection, no locking between our own calls)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from compat.responses_store.base import StorageUnavailable, StoredResponse
from compat.responses_store.sql import Statements

__all__ = ["SQLiteStore"]

_log = logging.getLogger(__name__)
_SQL = Statements(p="?", blob="BLOB")
T = TypeVar("T")


class SQLiteStore:
    """`ResponseStore` on one SQLite file."""

    backend = "sqlite"

    def __init__(
        self, path: Path, *, retention: float, max_bytes: int, timeout: float, synchronous: str = "full"
    ) -> None:
        self._path = path
        self._synchronous = "NORMAL" if synchronous == "normal" else "FULL"
        self._retention = retention
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mia-sqlite")
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        """Nothing to do: the file is opened (and created) by the first operation."""

    async def close(self) -> None:
        await self._run(self._close)
        self._executor.shutdown(wait=False)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self._path, timeout=self._timeout, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(f"PRAGMA synchronous = {self._synchronous}")
                for statement in _SQL.schema:
                    conn.execute(statement)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except (sqlite3.Error, OSError) as exc:
            _log.warning("response store (sqlite %s) failed: %s", self._path, exc)
            # a connection that failed may be broken: the next operation opens a new one
            self._executor.submit(self._close)
            raise StorageUnavailable from exc

    def _cutoff(self) -> float:
        return time.time() - self._retention

    async def put(self, record: StoredResponse) -> None:
        await self._run(self._put, record)

    def _put(self, r: StoredResponse) -> None:
        conn = self._connection()
        conn.execute(_SQL.put, (r.id, r.created_at, r.previous_id, r.size, r.response, r.input))

    async def get(self, response_id: str) -> StoredResponse | None:
        return await self._run(self._get, response_id, self._cutoff())

    def _get(self, response_id: str, cutoff: float) -> StoredResponse | None:
        row = self._connection().execute(_SQL.get, (response_id, cutoff)).fetchone()
        if row is None:
            return None
        rid, created_at, previous_id, response, items = row
        return StoredResponse(id=rid, created_at=created_at, previous_id=previous_id, response=response, input=items)

    async def input_items(self, response_id: str) -> bytes | None:
        return await self._run(self._input_items, response_id, self._cutoff())

    def _input_items(self, response_id: str, cutoff: float) -> bytes | None:
        row = self._connection().execute(_SQL.input_items, (response_id, cutoff)).fetchone()
        return None if row is None else bytes(row[0])

    async def delete(self, response_id: str) -> bool:
        return await self._run(self._delete, response_id, self._cutoff())

    def _delete(self, response_id: str, cutoff: float) -> bool:
        return self._connection().execute(_SQL.delete, (response_id, cutoff)).rowcount > 0

    async def evict(self) -> int:
        return await self._run(self._evict, self._cutoff())

    def _evict(self, cutoff: float) -> int:
        conn = self._connection()
        gone = conn.execute(_SQL.expire, (cutoff,)).rowcount
        row = conn.execute(_SQL.over_size, (self._max_bytes,)).fetchone()
        if row is not None:
            gone += conn.execute(_SQL.evict_older, (row[0],)).rowcount
        return int(gone)
