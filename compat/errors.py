"""Every error a client sees, mapped to OpenAI's envelope here and nowhere else."""

from __future__ import annotations

import math
import re

import msgspec

from compat.responses import ErrorBody, ErrorEnvelope
from pipelines.errors import (
    GatewayError,
    GenerationFailed,
    InvalidRequest,
    ModelNotFound,
    ModelUnavailable,
    QueueFull,
    UpstreamError,
)

__all__ = ["WireError", "from_decode_error", "from_gateway_error", "http_error"]

_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)


class WireError(msgspec.Struct, frozen=True):
    """An error ready for the wire: status, body, extra headers."""

    status: int
    body: ErrorEnvelope
    headers: dict[str, str] = {}

    def encode(self) -> bytes:
        return msgspec.json.encode(self.body)


def http_error(
    status: int, message: str, *, type: str | None = None, param: str | None = None, code: str | None = None
) -> WireError:
    if type is None:
        type = "invalid_request_error" if status < 500 else "server_error"
    return WireError(status, ErrorEnvelope(error=ErrorBody(message=message, type=type, param=param, code=code)))


def _param(path: str) -> str | None:
    """`$.messages[2].role` -> `messages[2].role`."""
    path = path.lstrip(".")
    return path or None


def from_decode_error(exc: msgspec.DecodeError) -> WireError:
    """A body that is not valid JSON or does not fit the request type: 400 with `param`."""
    m = _AT.match(str(exc))
    msg = m.group("msg") if m else str(exc)
    path = m.group("path") if m else None
    param = _param(path) if path is not None else None
    if isinstance(exc, msgspec.ValidationError):
        missing = _MISSING.match(msg)
        if missing:
            # OpenAI names the missing field itself, not the object that lacks it
            param = f"{param}.{missing.group('field')}" if param else missing.group("field")
            return http_error(
                400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
            )
        text = f"Invalid value for '{param}': {msg}." if param else f"Invalid request: {msg}."
        return http_error(400, text, param=param, code="invalid_value")
    return http_error(400, f"The request body is not valid JSON: {msg}.", code="invalid_json")


def from_gateway_error(exc: GatewayError) -> WireError:
    headers: dict[str, str] = {}
    if isinstance(exc, QueueFull):
        status, type_ = 429, "requests"
        headers["retry-after"] = str(max(1, math.ceil(exc.retry_after)))
    elif isinstance(exc, ModelUnavailable):
        status, type_ = 503, "server_error"
        headers["retry-after"] = str(max(1, math.ceil(exc.retry_after)))
    elif isinstance(exc, ModelNotFound):
        status, type_ = 404, "invalid_request_error"
    elif isinstance(exc, InvalidRequest):
        status, type_ = 400, "invalid_request_error"
    elif isinstance(exc, UpstreamError):
        status = exc.status
        type_ = "invalid_request_error" if status < 500 else "server_error"
    elif isinstance(exc, GenerationFailed):
        status, type_ = 500, "server_error"
    else:
        status, type_ = 500, "server_error"
    body = ErrorEnvelope(error=ErrorBody(message=exc.message, type=type_, param=exc.param, code=exc.code))
    return WireError(status, body, headers)
