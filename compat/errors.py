"""Every error a client sees, mapped to OpenAI's envelope here and nowhere else: any
`GatewayError` (pipelines/errors.py, compat/refusals.py) by the attributes it carries,
and msgspec's decoding errors by what they say."""

from __future__ import annotations

import math
import re

import msgspec

from compat.refusals import MalformedBody
from compat.responses import ErrorBody, ErrorEnvelope
from pipelines.errors import GatewayError

__all__ = ["WireError", "decode_error", "from_gateway_error"]

_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)


class WireError(msgspec.Struct, frozen=True):
    """An error ready for the wire: status, body, extra headers."""

    status: int
    body: ErrorEnvelope
    headers: dict[str, str] = {}

    def encode(self) -> bytes:
        return msgspec.json.encode(self.body)


def from_gateway_error(exc: GatewayError) -> WireError:
    status = exc.status
    type_ = exc.type or ("invalid_request_error" if status < 500 else "server_error")
    headers = {} if exc.retry_after is None else _retry_headers(exc.retry_after)
    body = ErrorEnvelope(error=ErrorBody(message=exc.message, type=type_, param=exc.param, code=exc.code))
    return WireError(status, body, headers)


def _retry_headers(seconds: float) -> dict[str, str]:
    """`retry-after` in whole seconds (the HTTP header), and `retry-after-ms`, which the
    OpenAI SDKs read first, so a sub-second hint is not rounded up to a second."""
    return {"retry-after": str(max(1, math.ceil(seconds))), "retry-after-ms": str(max(1, math.ceil(seconds * 1000)))}


def _param(path: str) -> str | None:
    """`$.messages[2].role` -> `messages[2].role`."""
    path = path.lstrip(".")
    return path or None


def decode_error(exc: msgspec.DecodeError) -> MalformedBody:
    """The error for a body that is not valid JSON or does not fit the request type: a 400 with `param`."""
    m = _AT.match(str(exc))
    msg = m.group("msg") if m else str(exc)
    path = m.group("path") if m else None
    param = _param(path) if path is not None else None
    if isinstance(exc, msgspec.ValidationError):
        missing = _MISSING.match(msg)
        if missing:
            # OpenAI names the missing field itself, not the object that lacks it
            param = f"{param}.{missing.group('field')}" if param else missing.group("field")
            return MalformedBody(
                f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
            )
        text = f"Invalid value for '{param}': {msg}." if param else f"Invalid request: {msg}."
        return MalformedBody(text, param=param, code="invalid_value")
    return MalformedBody(f"The request body is not valid JSON: {msg}.")
