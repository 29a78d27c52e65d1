"""Per-request plumbing as raw ASGI: the request id header and the request event."""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING, Any

from app import paths
from pipelines.events import EventBus, RequestFinished

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["RequestContextMiddleware", "endpoint_of", "new_request_id"]

_CLIENT_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")
_ENDPOINTS = {
    path: path
    for path in (
        paths.CHAT_COMPLETIONS,
        paths.COMPLETIONS,
        paths.RESPONSES,
        paths.RESPONSES_INPUT_TOKENS,
        paths.EMBEDDINGS,
        paths.MODELS,
        paths.HEALTH,
        paths.READY,
        paths.METRICS,
        paths.OPENAPI,
        paths.TOKENIZE,
        paths.DETOKENIZE,
        paths.TOKENIZER_INFO,
    )
}
"""Paths that are their own label (the label is our string, not the client's)."""


def new_request_id() -> str:
    # 32 random hex digits (the length of the uuid4().hex used before), without a UUID object
    return f"req_{os.urandom(16).hex()}"


def endpoint_of(path: str) -> str:
    """The bounded endpoint label for a path (a client cannot mint new ones)."""
    known = _ENDPOINTS.get(path)
    if known is not None:
        return known
    if path.startswith(f"{paths.MODELS}/"):
        return paths.MODEL
    if path.startswith(f"{paths.RESPONSES}/"):
        return _response_endpoint(path)
    if path.startswith(f"{paths.ADMIN}/"):
        return paths.ADMIN
    return "other"


def _response_endpoint(path: str) -> str:
    """`/v1/responses/{id}` and its sub-resources, one label each (whatever the id)."""
    rest = path.removeprefix(f"{paths.RESPONSES}/")
    if "/" not in rest:
        return paths.RESPONSE
    if rest.count("/") == 1 and rest.endswith("/input_items"):
        return paths.RESPONSE_INPUT_ITEMS
    if rest.count("/") == 1 and rest.endswith("/cancel"):
        return paths.RESPONSE_CANCEL
    return "other"


class RequestContextMiddleware:
    """Echoes a well-formed client `x-request-id` (or mints one) on every response,
    and emits `RequestFinished` with the status and duration."""

    def __init__(self, app: ASGIApp, bus: EventBus) -> None:
        self._app = app
        self._bus = bus

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        rid: str | None = None
        for name, value in scope["headers"]:
            if name == b"x-request-id" and _CLIENT_ID.match(value):
                rid = value.decode()
                break
        if rid is None:
            rid = new_request_id()
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = rid
        status = 500
        header = (b"x-request-id", rid.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self._app(scope, receive, send_with_id)
        finally:
            self._bus.emit(
                RequestFinished(
                    request_id=rid,
                    endpoint=endpoint_of(scope["path"]),
                    method=str(scope.get("method", "")),
                    status=status,
                    duration_seconds=time.perf_counter() - started,
                    model_id=state.get("model_id"),
                )
            )
