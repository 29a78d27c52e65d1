"""The generation routes served straight from ASGI, past Litestar's router.

Litestar's per-request work for a route (the router, the handler's signature model and
dependency injection, its response and exception layers) cost a stub chat completion
about 14 % of its time, and these routes use none of it: each reads its own body, builds
its own ASGI response and maps its own errors. So `POST` on these paths calls the route
function directly, with the same `Request` and the same error mapping as Litestar's
exception handlers (`app.errors`); every other method and path, and the OpenAPI
description, still go through Litestar (a `GET` on them is Litestar's 405)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from litestar import Request
from litestar.handlers import HTTPRouteHandler

from app.errors import error_asgi
from compat.refusals import InternalError
from pipelines.errors import GatewayError

if TYPE_CHECKING:
    from litestar.response.base import ASGIResponse
    from litestar.types import ASGIApp, HTTPScope, Receive, Scope, Send

    from app.gateway import Gateway

__all__ = ["DirectRoutes"]

_log = logging.getLogger(__name__)

Route = Callable[[Request[Any, Any, Any], "Gateway"], Awaitable["ASGIResponse"]]


class DirectRoutes:
    """Calls the POST route handlers among `handlers` without Litestar; the rest goes to `app`."""

    def __init__(self, app: ASGIApp, gateway: Gateway, handlers: Iterable[HTTPRouteHandler]) -> None:
        self._app = app
        self._gateway = gateway
        self._routes: dict[str, Route] = {}
        for handler in handlers:
            assert handler.http_methods == {"POST"}, handler
            for path in handler.paths:
                self._routes[path] = handler.fn

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and cast("HTTPScope", scope)["method"] == "POST":
            route = self._routes.get(scope["path"])
            if route is not None:
                await self._serve(route, scope, receive, send)
                return
        await self._app(scope, receive, send)

    async def _serve(self, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await route(Request(scope, receive, send), self._gateway)
        except GatewayError as exc:
            response = error_asgi(exc)
        except Exception:
            _log.exception("unexpected error on POST %s", scope["path"])
            response = error_asgi(InternalError())
        await response(scope, receive, send)
