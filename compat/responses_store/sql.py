"""The store's SQL, once for both backends: they differ in the placeholder (`?`, `%s`)
and the bytes type (`BLOB`, `BYTEA`) only.

Eviction by size keeps the newest responses whose sizes add up to the bound: one window
sum finds the newest response that no longer fits, and everything as old or older goes
(ties in `created_at` go together, which errs on the side of the bound)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Statements"]

_TABLE = "mia_responses"


@dataclass(frozen=True)
class Statements:
    p: str
    """The driver's placeholder."""
    blob: str
    """The database's bytes type."""

    @property
    def schema(self) -> tuple[str, ...]:
        return (
            f"CREATE TABLE IF NOT EXISTS {_TABLE} ("
            " id TEXT PRIMARY KEY,"
            " created_at DOUBLE PRECISION NOT NULL,"
            " previous_id TEXT,"
            " size BIGINT NOT NULL,"
            f" response {self.blob} NOT NULL,"
            f" input {self.blob} NOT NULL)",
            f"CREATE INDEX IF NOT EXISTS {_TABLE}_created_at ON {_TABLE} (created_at)",
        )

    @property
    def put(self) -> str:
        p = self.p
        return (
            f"INSERT INTO {_TABLE} (id, created_at, previous_id, size, response, input)"
            f" VALUES ({p}, {p}, {p}, {p}, {p}, {p})"
            " ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at, previous_id = excluded.previous_id,"
            " size = excluded.size, response = excluded.response, input = excluded.input"
        )

    @property
    def get(self) -> str:
        return (
            f"SELECT id, created_at, previous_id, response, input FROM {_TABLE}"
            f" WHERE id = {self.p} AND created_at >= {self.p}"
        )

    @property
    def input_items(self) -> str:
        return f"SELECT input FROM {_TABLE} WHERE id = {self.p} AND created_at >= {self.p}"

    @property
    def delete(self) -> str:
        return f"DELETE FROM {_TABLE} WHERE id = {self.p} AND created_at >= {self.p}"

    @property
    def expire(self) -> str:
        return f"DELETE FROM {_TABLE} WHERE created_at < {self.p}"

    @property
    def over_size(self) -> str:
        return (
            "SELECT created_at FROM (SELECT created_at, SUM(size) OVER (ORDER BY created_at DESC, id DESC) AS kept"
            f" FROM {_TABLE}) AS newest WHERE kept > {self.p} ORDER BY created_at DESC LIMIT 1"
        )

    @property
    def evict_older(self) -> str:
        return f"DELETE FROM {_TABLE} WHERE created_at <= {self.p}"
