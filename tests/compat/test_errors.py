"""The one mapping from the error tree to the wire: every class of the tree (generation
errors, upstream failures, the HTTP layer's refusals) by its status, OpenAI `type`, code,
headers and fallback reason, and the cancel reasons by the client error each becomes."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

import compat.refusals
import pipelines.errors
import pipelines.upstream.errors
from compat.errors import decode_error, from_gateway_error
from compat.refusals import (
    BodyTooLarge,
    ClientGone,
    Draining,
    FrameworkRefusal,
    HeadersTooLarge,
    InternalError,
    InvalidApiKey,
    MalformedBody,
    MethodNotAllowed,
    NotReady,
    Overloaded,
    PreviousResponseNotFound,
    RequestTimeout,
    UnknownRoute,
    UnsupportedMediaType,
)
from compat.requests import ChatCompletionRequest
from pipelines.errors import (
    Cancelled,
    CancelReason,
    ContextLengthExceeded,
    GatewayError,
    GenerationFailed,
    InvalidRequest,
    ModelNotFound,
    ModelUnavailable,
    QueueFull,
    ShuttingDown,
    Unsupported,
    UnsupportedModel,
    UpstreamError,
)
from pipelines.upstream.errors import UpstreamFailure, from_status, from_transport

INVALID = "invalid_request_error"
SERVER = "server_error"


def after(seconds: str, ms: str) -> dict[str, str]:
    """The retry hints of a refusal that may succeed later, as OpenAI's SDKs read them."""
    return {"retry-after": seconds, "retry-after-ms": ms}


# (error, status, type, code, headers, retry_reason)
TABLE: list[tuple[GatewayError, int, str, str | None, dict[str, str], str | None]] = [
    (InvalidRequest("bad", param="messages"), 400, INVALID, "invalid_value", {}, None),
    (InvalidRequest("bad", code="missing_required_parameter"), 400, INVALID, "missing_required_parameter", {}, None),
    (Unsupported("no"), 400, INVALID, "unsupported_parameter", {}, None),
    (UnsupportedModel("not this model"), 400, INVALID, "unsupported_model", {}, None),
    (ContextLengthExceeded("long"), 400, INVALID, "context_length_exceeded", {}, None),
    (ModelNotFound("who"), 404, INVALID, "model_not_found", {}, None),
    (QueueFull("busy"), 429, "requests", "rate_limit_exceeded", after("1", "1000"), "rate_limited"),
    (QueueFull("busy", retry_after=2.5), 429, "requests", "rate_limit_exceeded", after("3", "2500"), "rate_limited"),
    (QueueFull("busy", retry_after=0.01), 429, "requests", "rate_limit_exceeded", after("1", "10"), "rate_limited"),
    (ModelUnavailable("gone"), 503, SERVER, "model_unavailable", after("1", "1000"), "unavailable"),
    (ModelUnavailable("slow", retry_after=30), 503, SERVER, "model_unavailable", after("30", "30000"), "unavailable"),
    (ShuttingDown("bye"), 503, SERVER, "shutting_down", after("1", "1000"), "unavailable"),
    (UpstreamError("up"), 502, SERVER, "upstream_error", {}, None),
    (UpstreamError("up", status=400, code="x"), 400, INVALID, "x", {}, None),
    (GenerationFailed("oops"), 500, SERVER, "generation_failed", {}, "error"),
    (Cancelled(CancelReason.TIMEOUT), 503, SERVER, "timeout", after("1", "1000"), None),
    (Cancelled(CancelReason.SHUTDOWN), 503, SERVER, "shutdown", after("1", "1000"), None),
    (Cancelled(CancelReason.CLIENT_DISCONNECT), 500, SERVER, "client_disconnect", {}, None),
    (Cancelled(CancelReason.UPSTREAM_ERROR), 500, SERVER, "upstream_error", {}, None),
    (Cancelled(CancelReason.ERROR), 500, SERVER, "error", {}, None),
    # upstream failures, as the upstream module classifies them
    (from_status(500, b"", "u", "m"), 502, SERVER, "upstream_error", {}, "server_error"),
    (from_status(429, b"", "u", "m"), 429, INVALID, "rate_limit_exceeded", {}, "rate_limited"),
    (from_status(408, b"", "u", "m"), 504, SERVER, "upstream_timeout", {}, "timeout"),
    (from_status(401, b"", "u", "m"), 502, SERVER, "upstream_error", {}, None),
    (from_status(404, b"", "u", "m"), 502, SERVER, "upstream_error", {}, None),
    (from_status(422, b'{"error": {"message": "no", "code": "c"}}', "u", "m"), 400, INVALID, "c", {}, None),
    (from_status(400, b"plain", "u", "m"), 400, INVALID, None, {}, None),
    (from_transport(httpx.ConnectError("refused"), "u"), 502, SERVER, "upstream_error", {}, "connect_error"),
    (from_transport(httpx.ReadTimeout("slow"), "u"), 504, SERVER, "upstream_timeout", {}, "timeout"),
    # the HTTP layer's refusals
    (MalformedBody("not json"), 400, INVALID, "invalid_json", {}, None),
    (InvalidApiKey(), 401, INVALID, "invalid_api_key", {}, None),
    (UnknownRoute("GET", "/nope"), 404, INVALID, "not_found", {}, None),
    (PreviousResponseNotFound("resp_1"), 404, INVALID, "previous_response_not_found", {}, None),
    (MethodNotAllowed("DELETE", "/v1/models"), 405, INVALID, "method_not_allowed", {}, None),
    (RequestTimeout("body", 0.5), 408, INVALID, "timeout", {}, None),
    (BodyTooLarge(), 413, INVALID, "request_too_large", {}, None),
    (UnsupportedMediaType(), 415, INVALID, "unsupported_media_type", {}, None),
    (HeadersTooLarge(4096), 431, INVALID, "request_too_large", {}, None),
    (ClientGone(), 499, INVALID, "client_disconnect", {}, None),
    (FrameworkRefusal(400, "bad path"), 400, INVALID, "bad_request", {}, None),
    (FrameworkRefusal(418, "teapot"), 418, INVALID, None, {}, None),
    (FrameworkRefusal(500, "broken"), 500, SERVER, None, {}, None),
    (InternalError(), 500, SERVER, "internal_error", {}, None),
    (Draining(), 503, SERVER, "shutting_down", after("1", "1000"), None),
    (NotReady(["a", "b"]), 503, SERVER, "not_ready", after("1", "1000"), None),
    (Overloaded(), 503, SERVER, "overloaded", after("1", "1000"), None),
]


@pytest.mark.parametrize(
    ("exc", "status", "type_", "code", "headers", "retry_reason"),
    TABLE,
    ids=[f"{type(row[0]).__name__}-{row[1]}-{row[3]}" for row in TABLE],
)
def test_each_error_maps_to_its_status_type_code_and_headers(
    exc: GatewayError, status: int, type_: str, code: str | None, headers: dict[str, str], retry_reason: str | None
) -> None:
    wire = from_gateway_error(exc)
    assert (wire.status, wire.headers) == (status, headers)
    body = json.loads(wire.encode())
    assert body == {"error": {"message": exc.message, "type": type_, "param": exc.param, "code": code}}
    assert body["error"]["message"]
    assert exc.retry_reason == retry_reason


def _classes(module: Any) -> set[type[GatewayError]]:
    return {
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, GatewayError) and obj.__module__ == module.__name__
        if not obj.__name__.startswith("_")
    }


def test_the_table_covers_every_class_of_the_tree() -> None:
    """A class added to the tree without a row here fails this test."""
    tree = _classes(pipelines.errors) | _classes(compat.refusals) | _classes(pipelines.upstream.errors)
    covered = {type(row[0]) for row in TABLE}
    assert tree - covered == {GatewayError}


def test_messages_name_what_was_refused() -> None:
    assert from_gateway_error(UnknownRoute("GET", "/nope")).body.error.message == "Unknown route: GET /nope"
    assert "0.5 s" in RequestTimeout("headers", 0.5).message and "headers" in RequestTimeout("headers", 0.5).message
    assert "4096 bytes" in HeadersTooLarge(4096).message
    assert NotReady(["a", "b"]).message == "Models still loading: a, b."
    assert Cancelled(CancelReason.TIMEOUT).message == "Generation cancelled (timeout)."


@pytest.mark.parametrize("reason", list(CancelReason))
def test_a_cancel_reason_is_its_plain_string(reason: CancelReason) -> None:
    """Events, logs and metric labels see the same strings as before the enum."""
    assert reason == reason.value and str(reason) == reason.value and f"{reason}" == reason.value
    assert msgspec.json.encode(reason) == msgspec.json.encode(reason.value)
    assert Cancelled(reason).reason is reason and Cancelled(reason).code == reason.value


def test_an_upstream_failure_that_may_not_be_retried_has_no_retry_reason() -> None:
    failure = UpstreamFailure("x", reason="server_error", retryable=False)
    assert failure.retry_reason is None
    assert UpstreamFailure("x", reason="server_error", retryable=True).retry_reason == "server_error"


_DECODER = msgspec.json.Decoder(ChatCompletionRequest)


@pytest.mark.parametrize(
    ("body", "code", "param", "message"),
    [
        (b"{", "invalid_json", None, "The request body is not valid JSON: Input data was truncated."),
        (b'{"model": "m"}', "missing_required_parameter", "messages", "Missing required parameter: 'messages'."),
        (
            b'{"model": 1, "messages": []}',
            "invalid_value",
            "model",
            "Invalid value for 'model': Expected `str`, got `int`.",
        ),
        (b"[]", "invalid_value", None, "Invalid request: Expected `object`, got `array`."),
    ],
)
def test_a_body_that_does_not_decode_is_a_400_naming_the_param(
    body: bytes, code: str, param: str | None, message: str
) -> None:
    with pytest.raises(msgspec.DecodeError) as caught:
        _DECODER.decode(body)
    err = decode_error(caught.value)
    assert isinstance(err, MalformedBody)
    wire = from_gateway_error(err)
    assert wire.status == 400 and wire.headers == {}
    assert json.loads(wire.encode())["error"] == {"message": message, "type": INVALID, "param": param, "code": code}


def test_only_the_mapping_builds_an_envelope() -> None:
    """No route, middleware or protocol writes the error envelope by hand."""
    root = Path(__file__).resolve().parents[2]
    builders = {"ErrorEnvelope", "ErrorBody", "http_error"}
    found = []
    for package in ("app", "compat", "pipelines"):
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in builders:
                    found.append((str(path.relative_to(root)), node.func.id))
    assert sorted(found) == [("compat/errors.py", "ErrorBody"), ("compat/errors.py", "ErrorEnvelope")]
