"""The whole app around a harness's gateway, in process (no sockets)."""

from __future__ import annotations

import httpx

from app.factory import create_app
from tests.support.harness import Harness

__all__ = ["asgi"]


def asgi(harness: Harness) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(harness.gateway)), base_url="http://gw.test")
