"""Errors as HTTP responses: the gateway's own (through `compat.errors.from_gateway_error`)
and Litestar's exceptions turned into the gateway's refusals, so that no framework-shaped
body ever reaches a client and nothing a client sends produces a traceback."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from litestar import Response
from litestar.exceptions import HTTPException
from litestar.response.base import ASGIResponse

from compat.errors import WireError, from_gateway_error
from compat.refusals import BodyTooLarge, FrameworkRefusal, InternalError, MethodNotAllowed, UnknownRoute
from pipelines.errors import GatewayError

if TYPE_CHECKING:
    from litestar import Request

__all__ = ["error_asgi", "error_response", "exception_handlers"]

_log = logging.getLogger(__name__)

_JSON = "application/json"
_PASSED_ON = ("allow", "retry-after")
"""Headers of Litestar's exceptions that the client still needs (`allow` on a 405)."""


def error_response(exc: GatewayError, headers: Mapping[str, str] | None = None) -> Response[bytes]:
    """`exc` as a response, with the transport's own `headers` (if any) beside its own."""
    err = from_gateway_error(exc)
    return Response(content=err.encode(), status_code=err.status, media_type=_JSON, headers=_merged(err, headers))


def error_asgi(exc: GatewayError, headers: Mapping[str, str] | None = None) -> ASGIResponse:
    """The same, as a ready ASGI response (for handlers that skip Litestar's encoding)."""
    err = from_gateway_error(exc)
    return ASGIResponse(body=err.encode(), status_code=err.status, media_type=_JSON, headers=_merged(err, headers))


def _merged(err: WireError, headers: Mapping[str, str] | None) -> dict[str, str]:
    return {**err.headers, **headers} if headers else err.headers


def _refusal(request: Request, exc: HTTPException) -> GatewayError:
    status = exc.status_code
    if status == 404:
        return UnknownRoute(request.method, request.url.path)
    if status == 405:
        return MethodNotAllowed(request.method, request.url.path)
    if status == 413:
        return BodyTooLarge()
    return FrameworkRefusal(status, exc.detail or "Request failed.")


def _http_exception(request: Request, exc: HTTPException) -> Response[bytes]:
    passed = {k.lower(): v for k, v in (exc.headers or {}).items() if k.lower() in _PASSED_ON}
    return error_response(_refusal(request, exc), passed)


def _gateway_error(request: Request, exc: GatewayError) -> Response[bytes]:
    return error_response(exc)


def _unexpected(request: Request, exc: Exception) -> Response[bytes]:
    _log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(InternalError())


exception_handlers = {
    HTTPException: _http_exception,
    GatewayError: _gateway_error,
    Exception: _unexpected,
}
