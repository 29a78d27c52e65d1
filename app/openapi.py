"""The OpenAPI document, generated from the same msgspec Structs that decode and
encode the wire (so it cannot drift from what the code accepts)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Response, get

from app import paths
from compat.completions_wire import Completion, CompletionRequest
from compat.embeddings import EmbeddingList, EmbeddingsRequest
from compat.requests import ChatCompletionRequest
from compat.responses import ChatCompletion, ChatCompletionChunk, ErrorEnvelope, ModelCard, ModelList
from compat.responses_store import ItemList, ResponseDeleted
from compat.responses_wire import InputTokenCount, ResponseObject, ResponsesRequest, StreamEvent
from compat.tokenizer_wire import (
    DetokenizeRequest,
    DetokenizeResponse,
    TokenizeRequest,
    TokenizeResponse,
    TokenizerInfo,
)

__all__ = ["build_openapi", "openapi_route"]

_REF = "#/components/schemas/{name}"


_RESPONSE_ID = {"name": "response_id", "in": "path", "required": True, "schema": {"type": "string"}}
_PAGING = [
    {"name": "after", "in": "query", "required": False, "schema": {"type": "string"}},
    {"name": "before", "in": "query", "required": False, "schema": {"type": "string"}},
    {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
    {"name": "order", "in": "query", "required": False, "schema": {"type": "string", "enum": ["asc", "desc"]}},
]


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
    }


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Invalid request",
        401: "Missing or invalid API key",
        404: "Not found",
        408: "Request headers or body too slow",
        413: "Body too large",
        415: "Wrong content type",
        431: "Request line and headers too large",
        429: "Queue full",
        499: "Client closed the request",
        500: "Internal error",
        502: "Upstream error",
        503: "Not ready or unavailable",
    }
    return {str(c): _error(text[c]) for c in codes}


def _sse_event(chunk: dict[str, Any]) -> dict[str, Any]:
    """One server-sent event (OpenAPI 3.2 `itemSchema`, which schemathesis honours under 3.1
    too): `data` is `[DONE]`, or JSON that is a chunk or an error envelope."""
    return {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "anyOf": [
                    {"const": "[DONE]"},
                    {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": {"anyOf": [chunk, {"$ref": "#/components/schemas/ErrorEnvelope"}]},
                    },
                ]
            }
        },
    }


def _named_event(event: dict[str, Any]) -> dict[str, Any]:
    """One server-sent event of the Responses stream: its `event:` line names its type, its
    `data` is JSON, one of the stream's events (the `error` event among them)."""
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string"},
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": event},
        },
    }


def _json_post(operation: str, summary: str, request: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    return {
        "post": {
            "operationId": operation,
            "summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": response}}},
                **_errors(400, 401, 404, 408, 413, 415, 431, 503),
            },
        }
    }


def build_openapi(version: str = "0.1.0") -> dict[str, Any]:
    (
        (
            req,
            comp,
            chunk,
            models,
            card,
            _err,
            rreq,
            resp,
            event,
            items,
            deleted,
            count,
            ereq,
            elist,
            creq,
            cmpl,
            treq,
            tres,
            dreq,
            dres,
            tinfo,
        ),
        components,
    ) = msgspec.json.schema_components(
        [
            ChatCompletionRequest,
            ChatCompletion,
            ChatCompletionChunk,
            ModelList,
            ModelCard,
            ErrorEnvelope,
            ResponsesRequest,
            ResponseObject,
            StreamEvent,
            ItemList,
            ResponseDeleted,
            InputTokenCount,
            EmbeddingsRequest,
            EmbeddingList,
            CompletionRequest,
            Completion,
            TokenizeRequest,
            TokenizeResponse,
            DetokenizeRequest,
            DetokenizeResponse,
            TokenizerInfo,
        ],
        ref_template=_REF,
    )
    json_ok = {"description": "OK", "content": {"application/json": {"schema": {}}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mia-gateway",
            "version": version,
            "description": "An OpenAI-compatible API gateway for local and remote language models.",
        },
        "paths": {
            paths.CHAT_COMPLETIONS: {
                "post": {
                    "operationId": "createChatCompletion",
                    "summary": "Create a chat completion (streamed as SSE when `stream` is true).",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": req}}},
                    "responses": {
                        "200": {
                            "description": "A completion, or a stream of chunks ending in `data: [DONE]`.",
                            "content": {
                                "application/json": {"schema": comp},
                                "text/event-stream": {"itemSchema": _sse_event(chunk)},
                            },
                        },
                        **_errors(400, 401, 404, 408, 413, 415, 429, 431, 499, 500, 502, 503),
                    },
                }
            },
            paths.COMPLETIONS: {
                "post": {
                    "operationId": "createCompletion",
                    "summary": "Create a legacy text completion of a raw prompt (no chat template; streamed as SSE "
                    "when `stream` is true). `echo` with `logprobs` gives the prompt's own logprobs.",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": creq}}},
                    "responses": {
                        "200": {
                            "description": "A completion, or a stream of completion chunks ending in `data: [DONE]`.",
                            "content": {
                                "application/json": {"schema": cmpl},
                                "text/event-stream": {"itemSchema": _sse_event(cmpl)},
                            },
                        },
                        **_errors(400, 401, 404, 408, 413, 415, 429, 431, 499, 500, 502, 503),
                    },
                }
            },
            paths.RESPONSES: {
                "post": {
                    "operationId": "createResponse",
                    "summary": "Create a response (streamed as SSE events when `stream` is true), stored "
                    "unless `store` is false; `previous_response_id` continues a stored one; `background` "
                    "answers at once, `queued`.",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": rreq}}},
                    "responses": {
                        "200": {
                            "description": "A response, or a stream of named events ending in "
                            "`response.completed`, `response.incomplete` or `response.failed`.",
                            "headers": {
                                "x-mia-ignored-tools": {
                                    "description": "The hosted tools (by `type`) left out of the prompt: the "
                                    "gateway cannot run them.",
                                    "schema": {"type": "string"},
                                },
                            },
                            "content": {
                                "application/json": {"schema": resp},
                                "text/event-stream": {"itemSchema": _named_event(event)},
                            },
                        },
                        **_errors(400, 401, 404, 408, 413, 415, 429, 431, 499, 500, 502, 503),
                    },
                }
            },
            paths.RESPONSES_INPUT_TOKENS: {
                "post": {
                    "operationId": "countInputTokens",
                    "summary": "Count a Responses request's input tokens on its model, without generating.",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": rreq}}},
                    "responses": {
                        "200": {"description": "OK", "content": {"application/json": {"schema": count}}},
                        **_errors(400, 401, 404, 408, 413, 415, 503),
                    },
                }
            },
            paths.RESPONSE: {
                "get": {
                    "operationId": "getResponse",
                    "summary": "A stored response (`stream=true`, replaying its events, is a 400).",
                    "parameters": [
                        _RESPONSE_ID,
                        {"name": "stream", "in": "query", "required": False, "schema": {"type": "boolean"}},
                    ],
                    "responses": {
                        "200": {"description": "OK", "content": {"application/json": {"schema": resp}}},
                        **_errors(400, 401, 404, 503),
                    },
                },
                "delete": {
                    "operationId": "deleteResponse",
                    "summary": "Delete a stored response.",
                    "parameters": [_RESPONSE_ID],
                    "responses": {
                        "200": {"description": "OK", "content": {"application/json": {"schema": deleted}}},
                        **_errors(401, 404, 503),
                    },
                },
            },
            paths.RESPONSE_CANCEL: {
                "post": {
                    "operationId": "cancelResponse",
                    "summary": "Cancel a background response still queued or in progress.",
                    "parameters": [_RESPONSE_ID],
                    "responses": {
                        "200": {"description": "OK", "content": {"application/json": {"schema": resp}}},
                        **_errors(400, 401, 404, 503),
                    },
                }
            },
            paths.TOKENIZE: _json_post(
                "tokenize",
                "The tokens of a `prompt` (special-token text read as special tokens, as vLLM does) or of chat "
                "`messages` (as a generation reads them). `model` defaults to the first model.",
                treq,
                tres,
            ),
            paths.DETOKENIZE: _json_post(
                "detokenize", "The text of token ids. `model` defaults to the first model.", dreq, dres
            ),
            paths.TOKENIZER_INFO: {
                "get": {
                    "operationId": "tokenizerInfo",
                    "summary": "The tokenizer's configuration (special tokens, chat template), as vLLM serves it.",
                    "parameters": [{"name": "model", "in": "query", "required": False, "schema": {"type": "string"}}],
                    "responses": {
                        "200": {"description": "OK", "content": {"application/json": {"schema": tinfo}}},
                        **_errors(400, 401, 404, 503),
                    },
                }
            },
            paths.RESPONSE_INPUT_ITEMS: {
                "get": {
                    "operationId": "listInputItems",
                    "summary": "A stored response's input items, paged (newest first unless `order=asc`).",
                    "parameters": [_RESPONSE_ID, *_PAGING],
                    "responses": {
                        "200": {"description": "OK", "content": {"application/json": {"schema": items}}},
                        **_errors(400, 401, 404, 503),
                    },
                }
            },
            paths.EMBEDDINGS: {
                "post": {
                    "operationId": "createEmbedding",
                    "summary": "Create embeddings with an embedding model (a 400 for any other model). "
                    "`encoding_format: base64` gives each vector as base64 of little-endian float32 values.",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": ereq}}},
                    "responses": {
                        "200": {"description": "OK", "content": {"application/json": {"schema": elist}}},
                        **_errors(400, 401, 404, 408, 413, 415, 429, 431, 500, 502, 503),
                    },
                }
            },
            paths.MODELS: {
                "get": {
                    "operationId": "listModels",
                    "summary": "List the models, with `stub` saying which are not real here.",
                    "responses": {
                        "200": {"description": "OK", "content": {"application/json": {"schema": models}}},
                        **_errors(401),
                    },
                }
            },
            paths.MODEL: {
                "get": {
                    "operationId": "retrieveModel",
                    "summary": "One model by id or alias.",
                    "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {
                        "200": {"description": "OK", "content": {"application/json": {"schema": card}}},
                        **_errors(401, 404),
                    },
                }
            },
            paths.HEALTH: {"get": {"operationId": "health", "summary": "Liveness.", "responses": {"200": json_ok}}},
            paths.READY: {
                "get": {
                    "operationId": "ready",
                    "summary": "Readiness: 200 once every preloaded model is loaded (a stub counts).",
                    "responses": {"200": json_ok, **_errors(503)},
                }
            },
            paths.METRICS: {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics (OpenMetrics when asked via Accept).",
                    "responses": {
                        "200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}},
                        **_errors(401),
                    },
                }
            },
        },
        "components": {"schemas": components},
    }


@get(paths.OPENAPI, operation_id="openapi", include_in_schema=False)
async def openapi_route() -> Response[bytes]:
    return Response(content=msgspec.json.encode(build_openapi()), media_type="application/json")
