"""Schemathesis against `openapi/openapi.json` and a real `mia-gateway serve` (stub models)
on loopback: positive and negative cases for every operation, bounded in number.

Checks: never a 5xx, the status code and the content type are documented, the JSON
body matches the documented schema, every error is OpenAI's envelope, and every
streamed event is a `ChatCompletionChunk` (or an error envelope) with one `[DONE]` last.
`MIA_FUZZ_EXAMPLES` raises the per-operation budget for a longer local run."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.served import REPO, ServedGateway

pytestmark = pytest.mark.slow

OPENAPI = REPO / "openapi" / "openapi.json"
MODELS = ["stub-chat", "stub-harmony", "stub-chat-alias", "stub-embed"]
EXAMPLES = int(os.environ.get("MIA_FUZZ_EXAMPLES", "40"))


REGENERATE = ".venv/bin/mia-gateway openapi > openapi/openapi.json"


def _committed_document() -> Path:
    """The committed document, never generated here: fuzzing a document made from the
    code at hand would check the code against itself (tests/test_openapi.py checks that
    the committed one is what the code generates)."""
    if not OPENAPI.is_file():
        pytest.fail(
            f"{OPENAPI} is missing: the fuzz tests run against the committed API description. "
            f"Generate it from the repository root with `{REGENERATE}` and commit it.",
            pytrace=False,
        )
    return OPENAPI


RAW: dict[str, Any] = json.loads(_committed_document().read_text())
schema = schemathesis.openapi.from_path(_committed_document())
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])

_CHAT_200 = RAW["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
_COMPONENTS = RAW["components"]["schemas"]


def _validator(sub: dict[str, Any]) -> jsonschema.protocols.Validator:
    doc = {**sub, "components": {"schemas": _COMPONENTS}}
    cls = jsonschema.validators.validator_for(doc, default=jsonschema.Draft202012Validator)
    return cls(doc)


CHUNK = _validator(
    _CHAT_200["text/event-stream"].get("x-chunk-schema") or {"$ref": "#/components/schemas/ChatCompletionChunk"}
)
ENVELOPE = _validator({"$ref": "#/components/schemas/ErrorEnvelope"})
COMPLETION = _validator({"$ref": "#/components/schemas/Completion"})
_RESPONSES_SSE = RAW["paths"]["/v1/responses"]["post"]["responses"]["200"]["content"]["text/event-stream"]
RESPONSE_EVENT = _validator(_RESPONSES_SSE["itemSchema"]["properties"]["data"]["contentSchema"])
_LAST_EVENTS = {"response.completed", "response.incomplete", "response.failed"}


@schema.hook
def flatmap_body(context: Any, body: Any) -> st.SearchStrategy[Any]:
    # Random model names only ever meet a 404: steer most bodies to a served model, so
    # the generation path (prepare, stream, finalize, the SSE encoder) is fuzzed too.
    if isinstance(body, dict) and isinstance(body.get("model"), str):
        return st.sampled_from([*MODELS, body["model"]]).map(lambda m: {**body, "model": m})
    return st.just(body)


STORED: list[str] = []
"""Ids of responses stored on the fuzzed gateway (filled once by `stored_responses`)."""


@pytest.fixture(autouse=True)
def stored_responses(stub_gateway: ServedGateway) -> None:
    """A few stored responses, so that the routes that read one are fuzzed past their 404
    (DELETE may take them away: what follows is the 404 again, also documented)."""
    while len(STORED) < 4:
        body = {"model": "stub-harmony", "input": [{"role": "user", "content": "hi"}, {"role": "user", "content": "?"}]}
        STORED.append(httpx.post(f"{stub_gateway.api_url}/responses", json=body, timeout=30).json()["id"])


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: Any) -> st.SearchStrategy[Any]:
    if isinstance(path_parameters, dict) and isinstance(path_parameters.get("model"), str):
        return st.sampled_from([*MODELS, path_parameters["model"]]).map(lambda m: {**path_parameters, "model": m})
    if isinstance(path_parameters, dict) and isinstance(path_parameters.get("response_id"), str):
        given = path_parameters["response_id"]
        return st.sampled_from([*STORED, given]).map(lambda r: {**path_parameters, "response_id": r})
    return st.just(path_parameters)


def check_envelope(status: int, content_type: str, content: bytes) -> None:
    if status < 400:
        return
    assert content_type.startswith("application/json"), (status, content_type)
    body = json.loads(content)
    ENVELOPE.validate(body)
    assert set(body["error"]) == {"message", "type", "param", "code"}, body


def check_event_stream(
    content: bytes, *, cut_short: bool = False, chunk: jsonschema.protocols.Validator = CHUNK
) -> None:
    """Every event a chunk (`chunk`'s) or an error envelope; exactly one `[DONE]`, last.
    Schemathesis reads the first 20 events of a stream only (`cut_short`): those must be right."""
    events = [block for block in content.decode("utf-8").split("\n\n") if block.strip()]
    assert events, content
    if not cut_short:
        assert events[-1] == "data: [DONE]", content[-200:]
        events = events[:-1]
    for event in events:
        assert event.startswith("data: ") and "\n" not in event, event
        data = json.loads(event.removeprefix("data: "))
        if "error" in data:
            ENVELOPE.validate(data)
        else:
            chunk.validate(data)
    assert content.count(b"data: [DONE]") == (0 if cut_short else 1)


def check_named_events(content: bytes, *, cut_short: bool = False) -> None:
    """The Responses stream: `event:` and `data:` lines, the event's type in both, every
    event one the document describes, `sequence_number` counting from 0, and (read whole)
    one of the three final events last."""
    events = [block for block in content.decode("utf-8").split("\n\n") if block.strip()]
    assert events, content
    types = []
    for n, event in enumerate(events):
        name, payload = event.split("\n")
        data = json.loads(payload.removeprefix("data: "))
        RESPONSE_EVENT.validate(data)
        assert name == f"event: {data['type']}" and data["sequence_number"] == n, event
        types.append(data["type"])
    assert types[:2] == ["response.created", "response.in_progress"], types
    if not cut_short:
        assert types[-1] in _LAST_EVENTS and not _LAST_EVENTS & set(types[:-1]), types


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_gateway_keeps_its_documented_contract(case: Any, stub_gateway: ServedGateway) -> None:
    response = case.call(base_url=stub_gateway.base_url, timeout=15)
    content_type = response.headers.get("content-type", [""])[0]
    checks = [not_a_server_error, status_code_conformance, content_type_conformance]
    if content_type.startswith("text/event-stream"):
        # also check every event against the chunk schema directly (stricter than itemSchema)
        if case.path == "/v1/responses":
            check_named_events(response.content, cut_short=response.stream_cut_short)
        elif case.path == "/v1/completions":
            check_event_stream(response.content, cut_short=response.stream_cut_short, chunk=COMPLETION)
        else:
            check_event_stream(response.content, cut_short=response.stream_cut_short)
    checks.append(response_schema_conformance)
    case.validate_response(response, checks=checks)
    check_envelope(response.status_code, content_type, response.content)


_CHAT = schema["/v1/chat/completions"]["POST"]


@pytest.mark.parametrize("model", ["stub-chat", "stub-harmony"])
def test_a_stream_conforms_to_the_documented_event_schema(stub_gateway: ServedGateway, model: str) -> None:
    case = _CHAT.Case(
        body={
            "model": model,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 5,  # short enough for schemathesis to read the whole stream
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    response = case.call(base_url=stub_gateway.base_url, timeout=15)
    assert response.status_code == 200 and not response.stream_cut_short
    check_event_stream(response.content)  # what the gateway sends is right...
    case.validate_response(response, checks=[response_schema_conformance])  # ...the document is not


_RESPONSES = schema["/v1/responses"]["POST"]


@pytest.mark.parametrize("model", ["stub-chat", "stub-harmony"])
def test_a_responses_stream_conforms_to_the_documented_event_schema(stub_gateway: ServedGateway, model: str) -> None:
    case = _RESPONSES.Case(body={"model": model, "input": "hi", "max_output_tokens": 3, "stream": True})
    response = case.call(base_url=stub_gateway.base_url, timeout=15)
    assert response.status_code == 200 and not response.stream_cut_short
    check_named_events(response.content)
    case.validate_response(response, checks=[response_schema_conformance])


_COMPLETIONS = schema["/v1/completions"]["POST"]


@pytest.mark.parametrize("model", ["stub-chat", "stub-harmony"])
def test_a_completion_stream_conforms_to_the_documented_event_schema(stub_gateway: ServedGateway, model: str) -> None:
    body = {"model": model, "prompt": "hi", "max_tokens": 3, "stream": True, "echo": True, "logprobs": 2}
    case = _COMPLETIONS.Case(body={**body, "stream_options": {"include_usage": True}})
    response = case.call(base_url=stub_gateway.base_url, timeout=15)
    assert response.status_code == 200 and not response.stream_cut_short
    check_event_stream(response.content, chunk=COMPLETION)
    case.validate_response(response, checks=[response_schema_conformance])
