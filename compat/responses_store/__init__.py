"""Stored responses (`store: true`, `previous_response_id`, `GET`/`DELETE
/v1/responses/{id}`, its input items): the store's interface and errors (`base.py`), its
SQLite and PostgreSQL backends, what a response stores and the conversation a chain
stands for (`records.py`), and the paging of input items (`pages.py`).

It lives beside the wire (`compat/`): it stores wire objects, as the client saw them; it
is neither HTTP (the routes call it) nor generation (which never knows it exists)."""

from __future__ import annotations

from compat.responses_store.base import ResponseNotFound, ResponseStore, StorageUnavailable, StoredResponse
from compat.responses_store.factory import open_store
from compat.responses_store.metered import MeteredStore
from compat.responses_store.objects import ItemList, ResponseDeleted
from compat.responses_store.pages import PageQuery, page, page_query
from compat.responses_store.postgres import PostgresStore
from compat.responses_store.records import conversation, input_items, record
from compat.responses_store.settings import StorageSettings
from compat.responses_store.sqlite import SQLiteStore

__all__ = [
    "ItemList",
    "MeteredStore",
    "PageQuery",
    "PostgresStore",
    "ResponseDeleted",
    "ResponseNotFound",
    "ResponseStore",
    "SQLiteStore",
    "StorageSettings",
    "StorageUnavailable",
    "StoredResponse",
    "conversation",
    "input_items",
    "open_store",
    "page",
    "page_query",
    "record",
]
