"""The gateway's error tree. Each class carries what a client is told (`status`, `type`,
`code`, `retry_after`) and whether a fallback may follow it (`retry_reason`) as
attributes; `compat/errors.py` reads them, in one place, to build OpenAI's envelope.

GatewayError                    status   code                        retry_reason
├── InvalidRequest              400      invalid_value, or per inst. -
│   ├── Unsupported             400      unsupported_parameter       -
│   ├── UnsupportedModel        400      unsupported_model           -   (an embedding model for chat, or back)
│   └── ContextLengthExceeded   400      context_length_exceeded     -
├── ModelNotFound               404      model_not_found             -
├── QueueFull                   429      rate_limit_exceeded         rate_limited   (Retry-After)
├── ModelUnavailable            503      model_unavailable           unavailable    (Retry-After)
│   └── ShuttingDown            503      shutting_down               unavailable    (Retry-After)
├── UpstreamError               502*     upstream_error              -
│   └── UpstreamFailure         *        *                           its reason, if retryable
│                                                (pipelines/upstream/errors.py)
└── GenerationFailed            500      generation_failed           error
    └── Cancelled               503/500  the CancelReason            -              (Retry-After on 503)

* per instance. The refusals of the HTTP layer (415, 408, 401, 499…) join the tree in
`compat/refusals.py`: they are the wire's business, not generation's.

`CancelReason` names why a generation was cut short; it is what `CancelToken.cancel`
takes, what `GenerationCancelled` events and metrics say (its value), and what
`Cancelled` turns into a client error.
"""

from __future__ import annotations

import enum

__all__ = [
    "CancelReason",
    "Cancelled",
    "ContextLengthExceeded",
    "GatewayError",
    "GenerationFailed",
    "InvalidRequest",
    "ModelNotFound",
    "ModelUnavailable",
    "QueueFull",
    "ShuttingDown",
    "Unsupported",
    "UnsupportedModel",
    "UpstreamError",
]


class CancelReason(enum.StrEnum):
    """Why a generation was cut short (a bounded metric label: add here, nowhere else)."""

    CLIENT_DISCONNECT = "client_disconnect"
    TIMEOUT = "timeout"
    """`request_timeout` ran out."""
    SHUTDOWN = "shutdown"
    """The gateway stopped before the generation ended."""
    UPSTREAM_ERROR = "upstream_error"
    ERROR = "error"
    CANCELLED = "cancelled"
    """The client cancelled it (a background response's `POST /v1/responses/{id}/cancel`)."""


class GatewayError(Exception):
    """Base of every error the gateway reports to a client."""

    status: int = 500
    """The HTTP status the client gets."""
    type: str | None = None
    """OpenAI's error `type`; None: by status (`invalid_request_error` below 500, else `server_error`)."""
    code: str | None = None
    retry_after: float | None = None
    """Seconds after which trying again may succeed (the `Retry-After` header); None: no header."""
    retry_reason: str | None = None
    """When set, another upstream or model may be tried after this failure (if no token was
    sent yet), and the hop is recorded under this reason; None: the failure is final."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class InvalidRequest(GatewayError):
    status = 400
    code: str | None = "invalid_value"
    """Every 400 carries a code (OpenAI's for a bad value, unless the instance names a closer one)."""


class Unsupported(InvalidRequest):
    code = "unsupported_parameter"


class UnsupportedModel(InvalidRequest):
    """The model exists but does not serve this endpoint (`param` is `model`)."""

    code = "unsupported_model"

    def __init__(self, message: str) -> None:
        super().__init__(message, param="model")


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class ModelNotFound(GatewayError):
    status = 404
    code = "model_not_found"


class QueueFull(GatewayError):
    status = 429
    type = "requests"
    code = "rate_limit_exceeded"
    retry_reason = "rate_limited"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ModelUnavailable(GatewayError):
    status = 503
    code = "model_unavailable"
    retry_reason = "unavailable"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ShuttingDown(ModelUnavailable):
    """Admission is closed: the gateway is draining its generations before it stops."""

    code = "shutting_down"


class UpstreamError(GatewayError):
    code = "upstream_error"

    def __init__(self, message: str, *, status: int = 502, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message, param=param, code=code)
        self.status = status


class GenerationFailed(GatewayError):
    """The model itself failed mid-way."""

    code = "generation_failed"
    retry_reason: str | None = "error"


_RETRY_LATER = frozenset({CancelReason.TIMEOUT, CancelReason.SHUTDOWN})
"""Cancellations that are the gateway's doing and pass: the same request may succeed later."""


class Cancelled(GenerationFailed):
    """A generation cut short for `reason`, as the client hears of it: a 503 with
    `Retry-After` when trying again may succeed (timeout, shutdown), else a 500; the
    code is the reason. Stream and non-stream answers are built from this one class."""

    retry_reason = None

    def __init__(self, reason: CancelReason) -> None:
        super().__init__(f"Generation cancelled ({reason.value}).", code=reason.value)
        self.reason = reason
        if reason in _RETRY_LATER:
            self.status = 503
            self.retry_after = 1.0
