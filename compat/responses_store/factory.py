"""The store `[storage]` names: PostgreSQL when `url` is one, else SQLite in the data folder."""

from __future__ import annotations

from compat.responses_store.base import ResponseStore
from compat.responses_store.postgres import PostgresStore
from compat.responses_store.settings import StorageSettings
from compat.responses_store.sqlite import SQLiteStore

__all__ = ["open_store"]


def open_store(settings: StorageSettings) -> ResponseStore:
    """The backend `settings` name (nothing connects before the store's first use or `open`)."""
    if settings.postgres:
        return PostgresStore(
            settings.url,
            retention=settings.retention_seconds,
            max_bytes=settings.max_bytes,
            timeout=settings.timeout,
            pool_size=settings.pool_size,
        )
    return SQLiteStore(
        settings.sqlite_path,
        retention=settings.retention_seconds,
        max_bytes=settings.max_bytes,
        timeout=settings.timeout,
        synchronous=settings.sqlite_synchronous,
    )
