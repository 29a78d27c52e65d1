"""`[storage]`: where stored responses live and for how long (env: `MIA_STORAGE_<KEY>`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

__all__ = ["POSTGRES_SCHEMES", "StorageSettings"]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class StorageSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Stored responses (`store: true`, `previous_response_id`). One replica keeps them in
    SQLite, one file in `data_dir`; replicas that must see each other's responses share
    PostgreSQL (`url`)."""

    url: str = ""
    """Empty: SQLite, `data_dir/responses.sqlite3`. `postgresql://user@host/db`: PostgreSQL."""
    data_dir: str = "~/.local/share/mia-gateway"
    """The gateway's data folder (SQLite's file is created there on first use)."""
    retention_days: Annotated[float, Meta(gt=0)] = 30.0
    """A stored response is gone (unreadable at once, deleted by the next eviction) this long after it was created."""
    max_bytes: Annotated[int, Meta(ge=1)] = 1 << 30
    """The most bytes of responses and input items kept; past it, the oldest are evicted."""
    evict_interval: Annotated[float, Meta(gt=0)] = 60.0
    """Seconds between evictions (retention and size)."""
    timeout: Annotated[float, Meta(gt=0)] = 5.0
    """Seconds one storage operation may wait for the database (a connection, a lock)."""
    sqlite_synchronous: Literal["normal", "full"] = "full"
    """SQLite's `synchronous` (in WAL mode). `full`: a response is on disk when the client
    hears it completed, and survives a power loss (an fsync per put: 0.2-0.5 ms here on a
    quiet disk, 3-10 ms on a busy one); `normal`: it survives a crash of the gateway, not of
    the machine, and never waits for the disk."""
    pool_size: Annotated[int, Meta(ge=1, le=256)] = 4
    """PostgreSQL connections per gateway process, at most."""

    @property
    def postgres(self) -> bool:
        return self.url.startswith(POSTGRES_SCHEMES)

    @property
    def sqlite_path(self) -> Path:
        return Path(self.data_dir).expanduser() / "responses.sqlite3"

    @property
    def retention_seconds(self) -> float:
        return self.retention_days * 86400.0
