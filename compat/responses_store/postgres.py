"""The shared store: PostgreSQL, for replicas that must see each other's responses
(created on one, continued on another). psycopg 3's async connections through its pool:
nothing blocks the event loop.

The pool checks a connection before lending it (one round trip on loopback, well under a
millisecond), so that one broken by a restart of the database is replaced, not failed.
When the database is down, the pool would keep reconnecting in the background with a
growing backoff (1, 2, 4 ... s), and every operation would wait out `timeout` first. So the
first failure marks the store down: from then on an operation first tries one direct
connection (at most one try a second; refused at once while the server is down, and the
503 follows at once too), and the first that succeeds replaces the pool: the gateway
recovers with the database's first request, not at the end of a backoff.

The table is created by the first replica that gets a connection, under an advisory lock
(two replicas starting together would otherwise race on `CREATE TABLE`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from compat.responses_store.base import StorageUnavailable, StoredResponse
from compat.responses_store.sql import Statements

__all__ = ["PostgresStore"]

_log = logging.getLogger(__name__)
_SQL = Statements(p="%s", blob="BYTEA")
_SCHEMA_LOCK = 0x6D69615F7265  # any constant; the same in every replica
_PROBE_EVERY = 1.0
"""Seconds between two tries to reach a database that is down (the 503s' Retry-After)."""
T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]


class PostgresStore:
    """`ResponseStore` on a PostgreSQL database (`url`), through a pool of `pool_size` connections."""

    backend = "postgresql"

    def __init__(self, url: str, *, retention: float, max_bytes: int, timeout: float, pool_size: int) -> None:
        self._url = url
        self._retention = retention
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._pool_size = pool_size
        self._connect_args: dict[str, Any] = {"autocommit": True, "connect_timeout": max(1, round(timeout))}
        self._pool = self._new_pool()
        self._schema_ready = False
        self._down = False
        self._probed = 0.0
        self._probe_lock = asyncio.Lock()

    def _new_pool(self) -> AsyncConnectionPool[Conn]:
        return AsyncConnectionPool(
            self._url,
            min_size=1,
            max_size=self._pool_size,
            open=False,
            timeout=self._timeout,
            check=AsyncConnectionPool.check_connection,
            kwargs=self._connect_args,
            name="mia-responses",
        )

    async def open(self) -> None:
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    async def _run(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        if self._down:
            await self._recover()
        try:
            async with self._pool.connection() as conn:
                if not self._schema_ready:
                    await self._create_schema(conn)
                return await fn(conn)
        except psycopg.Error as exc:  # the pool's own errors (PoolTimeout...) are OperationalErrors
            _log.warning("response store (postgresql) failed: %s", exc)
            self._down = True
            raise StorageUnavailable from exc

    async def _recover(self) -> None:
        """Back up if one direct connection succeeds (then with a new pool); else `StorageUnavailable`."""
        async with self._probe_lock:
            if not self._down:
                return  # another operation brought it back while this one waited
            if time.monotonic() - self._probed < _PROBE_EVERY:
                raise StorageUnavailable
            self._probed = time.monotonic()
            try:
                probe = await psycopg.AsyncConnection.connect(self._url, **self._connect_args)
            except psycopg.Error:
                raise StorageUnavailable from None
            await probe.close()
            old, self._pool = self._pool, self._new_pool()
            await self._pool.open(wait=False)
            self._down = False
            _log.info("response store (postgresql) is back")
        await old.close(timeout=0)

    async def _create_schema(self, conn: Conn) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in _SQL.schema:
                await conn.execute(statement)
        self._schema_ready = True

    def _cutoff(self) -> float:
        return time.time() - self._retention

    async def put(self, record: StoredResponse) -> None:
        r = record

        async def put(conn: Conn) -> None:
            values = (r.id, r.created_at, r.previous_id, r.size, r.response, r.input)
            await conn.execute(_SQL.put, values)

        await self._run(put)

    async def get(self, response_id: str) -> StoredResponse | None:
        cutoff = self._cutoff()

        async def get(conn: Conn) -> StoredResponse | None:
            cur = await conn.execute(_SQL.get, (response_id, cutoff))
            row = await cur.fetchone()
            if row is None:
                return None
            rid, created_at, previous_id, response, items = row
            return StoredResponse(
                id=rid, created_at=created_at, previous_id=previous_id, response=bytes(response), input=bytes(items)
            )

        return await self._run(get)

    async def input_items(self, response_id: str) -> bytes | None:
        cutoff = self._cutoff()

        async def items(conn: Conn) -> bytes | None:
            cur = await conn.execute(_SQL.input_items, (response_id, cutoff))
            row = await cur.fetchone()
            return None if row is None else bytes(row[0])

        return await self._run(items)

    async def delete(self, response_id: str) -> bool:
        cutoff = self._cutoff()

        async def delete(conn: Conn) -> bool:
            cur = await conn.execute(_SQL.delete, (response_id, cutoff))
            return cur.rowcount > 0

        return await self._run(delete)

    async def evict(self) -> int:
        cutoff = self._cutoff()

        async def evict(conn: Conn) -> int:
            gone = (await conn.execute(_SQL.expire, (cutoff,))).rowcount
            row = await (await conn.execute(_SQL.over_size, (self._max_bytes,))).fetchone()
            if row is not None:
                gone += (await conn.execute(_SQL.evict_older, (row[0],))).rowcount
            return int(gone)

        return await self._run(evict)
