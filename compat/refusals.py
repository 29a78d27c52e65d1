"""The HTTP layer's own refusals, as classes of the gateway's error tree (pipelines/errors.py):
answers given before or beside any generation, which generation code has no business
knowing. `compat/errors.py` maps them like every other error.

GatewayError
├── InvalidRequest
│   └── MalformedBody           400  invalid_json / invalid_value / missing_required_parameter
├── InvalidApiKey               401  invalid_api_key
├── UnknownRoute                404  not_found
├── PreviousResponseNotFound    404  previous_response_not_found   unknown, expired or deleted
├── MethodNotAllowed            405  method_not_allowed
├── RequestTimeout              408  timeout                 body or headers too slow
├── BodyTooLarge                413  request_too_large
├── UnsupportedMediaType        415  unsupported_media_type
├── HeadersTooLarge             431  request_too_large
├── ClientGone                  499  client_disconnect       the client left before its answer
├── FrameworkRefusal            *    *                       any other status Litestar refuses with
├── InternalError               500  internal_error
├── Draining                    503  shutting_down           the gateway is stopping
├── NotReady                    503  not_ready               preloaded models still loading
└── Overloaded                  503  overloaded              too many open connections (Retry-After)

Headers that belong to the transport (`connection: close`, `www-authenticate`, `allow`) are
added by the HTTP code that decides them; `Retry-After` comes from `retry_after`.
"""

from __future__ import annotations

from pipelines.errors import GatewayError, InvalidRequest

__all__ = [
    "BodyTooLarge",
    "ClientGone",
    "Draining",
    "FrameworkRefusal",
    "HeadersTooLarge",
    "InternalError",
    "InvalidApiKey",
    "MalformedBody",
    "MethodNotAllowed",
    "NotReady",
    "Overloaded",
    "PreviousResponseNotFound",
    "RequestTimeout",
    "UnknownRoute",
    "UnsupportedMediaType",
]


class _Fixed(GatewayError):
    """A refusal that always says the same (`text`)."""

    text = ""

    def __init__(self) -> None:
        super().__init__(self.text)


class MalformedBody(InvalidRequest):
    """A body that is not JSON, not UTF-8, or does not fit the request type (`code` per instance)."""

    code = "invalid_json"


class UnknownRoute(GatewayError):
    status = 404
    code = "not_found"

    def __init__(self, method: str, path: str) -> None:
        super().__init__(f"Unknown route: {method} {path}")


class PreviousResponseNotFound(GatewayError):
    """`previous_response_id` names a response the store does not have (unknown, expired,
    evicted or deleted; or one before it in its chain): never a pretence of having continued it."""

    status = 404
    code = "previous_response_not_found"

    def __init__(self, response_id: str) -> None:
        super().__init__(f"Previous response with id '{response_id}' not found.", param="previous_response_id")


class MethodNotAllowed(GatewayError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, method: str, path: str) -> None:
        super().__init__(f"Method {method} is not allowed on {path}")


class RequestTimeout(GatewayError):
    """The request's `part` (body, headers) did not arrive in time; its connection closes."""

    status = 408
    code = "timeout"

    def __init__(self, part: str, seconds: float) -> None:
        super().__init__(f"The request {part} did not arrive within {seconds:g} s.")


class BodyTooLarge(_Fixed):
    status = 413
    code = "request_too_large"
    text = "The request body is too large."


class UnsupportedMediaType(_Fixed):
    status = 415
    code = "unsupported_media_type"
    text = "Content-Type must be application/json."


class HeadersTooLarge(GatewayError):
    status = 431
    code = "request_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"The request line and headers exceed {limit} bytes.")


class ClientGone(_Fixed):
    """The client disconnected before its non-stream answer was ready (nginx's 499)."""

    status = 499
    code = "client_disconnect"
    text = "Client closed the request."


class InvalidApiKey(_Fixed):
    status = 401
    code = "invalid_api_key"
    text = "Incorrect API key provided. Send it as 'Authorization: Bearer <key>'."


_FRAMEWORK_CODES = {400: "bad_request", 401: "invalid_api_key", 415: "unsupported_media_type"}


class FrameworkRefusal(GatewayError):
    """A refusal of the web framework's own that has no class here (`status` per instance)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, code=_FRAMEWORK_CODES.get(status))
        self.status = status


class InternalError(_Fixed):
    """Anything unexpected: the client learns no more than this (the log has the rest)."""

    code = "internal_error"
    text = "The gateway hit an internal error."


class Draining(_Fixed):
    status = 503
    code = "shutting_down"
    retry_after = 1.0  # behind a load balancer, another replica answers
    text = "The gateway is shutting down."


class NotReady(GatewayError):
    status = 503
    code = "not_ready"
    retry_after = 1.0

    def __init__(self, loading: list[str]) -> None:
        super().__init__(f"Models still loading: {', '.join(loading)}.")


class Overloaded(_Fixed):
    status = 503
    code = "overloaded"
    retry_after = 1.0
    text = "The gateway has too many open connections; retry shortly."
