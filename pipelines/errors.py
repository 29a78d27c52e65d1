"""The gateway's error tree. `compat/errors.py` maps each class to the wire, in one place.

GatewayError
├── InvalidRequest          a bad value from the client (has `param`)
│   ├── Unsupported         valid OpenAI, but not served here
│   └── ContextLengthExceeded
├── ModelNotFound
├── QueueFull               admission control said no (has `retry_after`)
├── ModelUnavailable        not loaded in time, or shutting down (has `retry_after`)
├── UpstreamError           an upstream backend failed (has `status`)
└── GenerationFailed        the model itself failed mid-way
"""

from __future__ import annotations

__all__ = [
    "ContextLengthExceeded",
    "GatewayError",
    "GenerationFailed",
    "InvalidRequest",
    "ModelNotFound",
    "ModelUnavailable",
    "QueueFull",
    "Unsupported",
    "UpstreamError",
]


class GatewayError(Exception):
    """Base of every error the gateway reports to a client."""

    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class InvalidRequest(GatewayError):
    pass


class Unsupported(InvalidRequest):
    code = "unsupported_parameter"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class ModelNotFound(GatewayError):
    code = "model_not_found"


class QueueFull(GatewayError):
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ModelUnavailable(GatewayError):
    code = "model_unavailable"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamError(GatewayError):
    code = "upstream_error"

    def __init__(self, message: str, *, status: int = 502, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message, param=param, code=code)
        self.status = status


class GenerationFailed(GatewayError):
    code = "generation_failed"
