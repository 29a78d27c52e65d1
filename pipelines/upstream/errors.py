"""Upstream failures, classified in one place: how a request to an upstream failed
(a `reason`, which is also its metric `result`), what the client is told (a status in
OpenAI's envelope, through `UpstreamError`), and whether another upstream or model may
still be tried (`retryable`; only ever acted on before the first token).

    UpstreamError (pipelines.errors)
    └── UpstreamFailure          reason, retryable (then `retry_reason` = reason)

HTTP status from the upstream -> what the client sees:
    400, 413, 422, other 4xx  -> 400 with the upstream's message/param/code (not retried)
    401, 403                  -> 502 (the gateway's credentials are wrong, not the client's)
    404                       -> 502 (the upstream does not serve the configured model)
    408, timeouts             -> 504, retryable
    429                       -> 429, retryable
    5xx, transport errors     -> 502, retryable
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from pipelines.errors import UpstreamError

__all__ = [
    "FAILURES",
    "RESULTS",
    "UpstreamFailure",
    "from_status",
    "from_transport",
]

RESULTS = frozenset(
    {
        "ok",
        "cancelled",
        "client_error",
        "rate_limited",
        "connect_error",
        "network_error",
        "timeout",
        "server_error",
        "bad_response",
        "auth_error",
        "not_found",
    }
)
"""Every `result` an upstream request can end with (a bounded metric label)."""

FAILURES = frozenset(
    {"connect_error", "network_error", "timeout", "server_error", "bad_response", "auth_error", "not_found"}
)
"""Results that count towards ejecting the upstream. `client_error` (the request's fault)
counts as a success; `rate_limited` (alive, only busy) and `cancelled` count as neither."""

_BODY_LIMIT = 2000


class UpstreamFailure(UpstreamError):
    """A request to an upstream failed in the way `reason` names."""

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        status: int = 502,
        retryable: bool = False,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, status=status, param=param, code=code)
        if reason == "client_error":
            # the upstream's own code, or none: not `upstream_error` (UpstreamError types it `str`)
            self.code = code  # type: ignore[assignment]
        self.reason = reason
        self.retryable = retryable
        self.retry_reason = reason if retryable else None


def from_transport(exc: httpx.TransportError, where: str) -> UpstreamFailure:
    """A connection that failed, timed out or broke: retryable (if nothing was sent yet)."""
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamFailure(
            f"{where} timed out ({type(exc).__name__}).",
            reason="timeout",
            status=504,
            retryable=True,
            code="upstream_timeout",
        )
    reason = "connect_error" if isinstance(exc, httpx.ConnectError) else "network_error"
    return UpstreamFailure(
        f"{where} failed: {type(exc).__name__}: {exc or 'connection lost'}.", reason=reason, retryable=True
    )


class _Envelope(msgspec.Struct):
    error: Any = None
    message: str | None = None
    detail: Any = None


def _error_fields(body: bytes) -> tuple[str | None, str | None, str | None]:
    """(message, param, code) from an OpenAI envelope, FastAPI's `detail`, or plain text."""
    try:
        env = msgspec.json.decode(body, type=_Envelope)
    except msgspec.DecodeError:
        text = body.decode("utf-8", "replace").strip()[:_BODY_LIMIT]
        return (text or None), None, None
    err = env.error
    if isinstance(err, dict):
        msg, param, code = err.get("message"), err.get("param"), err.get("code")
        return (
            str(msg) if msg is not None else None,
            str(param) if param is not None else None,
            str(code) if code is not None else None,
        )
    if isinstance(err, str):
        return err, None, None
    if env.message is not None:
        return env.message, None, None
    if env.detail is not None:
        return str(env.detail)[:_BODY_LIMIT], None, None
    return None, None, None


def from_status(status: int, body: bytes, where: str, upstream_model: str) -> UpstreamFailure:
    """The failure an upstream's non-200 answer stands for (see the module table)."""
    message, param, code = _error_fields(body[: _BODY_LIMIT * 4])
    said = f": {message}" if message else ""
    if status in (401, 403):
        return UpstreamFailure(f"{where} rejected the gateway's credentials (HTTP {status}){said}", reason="auth_error")
    if status == 404:
        return UpstreamFailure(f"{where} does not serve model '{upstream_model}' (HTTP 404){said}", reason="not_found")
    if status == 408:
        return UpstreamFailure(
            f"{where} timed out (HTTP 408){said}", reason="timeout", status=504, retryable=True, code="upstream_timeout"
        )
    if status == 429:
        return UpstreamFailure(
            f"{where} is rate limiting (HTTP 429){said}",
            reason="rate_limited",
            status=429,
            retryable=True,
            code="rate_limit_exceeded",
        )
    if 400 <= status < 500:
        # The request itself was refused: the client hears what the upstream said.
        return UpstreamFailure(
            message or f"The upstream refused the request (HTTP {status}).",
            reason="client_error",
            status=400,
            param=param,
            code=code,
        )
    if status >= 500:
        return UpstreamFailure(f"{where} failed (HTTP {status}){said}", reason="server_error", retryable=True)
    return UpstreamFailure(f"{where} answered HTTP {status}{said}", reason="bad_response", retryable=True)
