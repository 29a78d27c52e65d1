"""Litestar's exceptions turned into OpenAI's envelope: no framework-shaped body ever
reaches a client, and nothing a client sends produces a traceback."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from litestar import Response
from litestar.exceptions import HTTPException
from litestar.response.base import ASGIResponse

from compat.errors import WireError, from_gateway_error, http_error
from pipelines.errors import GatewayError

if TYPE_CHECKING:
    from litestar import Request

__all__ = ["error_asgi", "error_response", "exception_handlers"]

_log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "invalid_api_key",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
}


def error_response(err: WireError) -> Response[bytes]:
    return Response(content=err.encode(), status_code=err.status, media_type="application/json", headers=err.headers)


def error_asgi(err: WireError) -> ASGIResponse:
    """The same, as a ready ASGI response (for handlers that skip Litestar's encoding)."""
    return ASGIResponse(body=err.encode(), status_code=err.status, media_type="application/json", headers=err.headers)


def _http_exception(request: Request, exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    if status == 404:
        message = f"Unknown route: {request.method} {request.url.path}"
    elif status == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}"
    elif status == 413:
        message = "The request body is too large."
    else:
        message = exc.detail or "Request failed."
    err = http_error(status, message, code=_HTTP_CODES.get(status))
    headers = dict(err.headers)
    if exc.headers:
        headers.update({k.lower(): v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")})
    return Response(content=err.encode(), status_code=status, media_type="application/json", headers=headers)


def _gateway_error(request: Request, exc: GatewayError) -> Response[bytes]:
    return error_response(from_gateway_error(exc))


def _unexpected(request: Request, exc: Exception) -> Response[bytes]:
    _log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(http_error(500, "The gateway hit an internal error.", code="internal_error"))


exception_handlers = {
    HTTPException: _http_exception,
    GatewayError: _gateway_error,
    Exception: _unexpected,
}
