"""The generation routes, served straight from ASGI rather than through Litestar.

Litestar's per-request work for a route (the router, the handler's signature model and
dependency injection, its response and exception layers) cost a stub chat completion
about a fifth of its time, and these routes use none of it: each reads its own body,
builds its own answer and maps its own errors. So their paths are dispatched here, with
the same `Request` and the same error mapping as Litestar's exception handlers
(`app.errors`); a method other than POST on them is the same 405 Litestar gives (with
`Allow`), and every other path goes to Litestar."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from litestar import Request
from litestar.response.base import ASGIResponse

from app.errors import error_asgi
from compat.refusals import InternalError, MethodNotAllowed
from pipelines.errors import GatewayError

if TYPE_CHECKING:
    from litestar.types import ASGIApp, HTTPScope, Receive, Scope, Send

    from app.answers import Answer
    from app.gateway import Gateway

__all__ = ["DirectRoutes", "Route"]

_log = logging.getLogger(__name__)

Route = Callable[[Request[Any, Any, Any], "Gateway"], Awaitable["Answer"]]
"""A POST route: the request and the gateway in, the answer out."""
_ALLOW = {"allow": "POST, OPTIONS"}


class DirectRoutes:
    """Serves `routes` (path -> POST route) itself; everything else goes to `app`."""

    def __init__(self, app: ASGIApp, gateway: Gateway, routes: Mapping[str, Route]) -> None:
        self._app = app
        self._gateway = gateway
        self._routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self._app(scope, receive, send)
            return
        method = cast("HTTPScope", scope)["method"]
        if method == "POST":
            answer = await self._answer(route, scope, receive, send)
        elif method == "OPTIONS":
            answer = ASGIResponse(status_code=204, headers=_ALLOW)
        else:
            answer = error_asgi(MethodNotAllowed(method, scope["path"]), _ALLOW)
        await answer(scope, receive, send)

    async def _answer(self, route: Route, scope: Scope, receive: Receive, send: Send) -> Answer:
        try:
            return await route(Request(scope, receive, send), self._gateway)
        except GatewayError as exc:
            return error_asgi(exc)
        except Exception:
            _log.exception("unexpected error on POST %s", scope["path"])
            return error_asgi(InternalError())
