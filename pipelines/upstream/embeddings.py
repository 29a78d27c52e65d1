"""Embeddings relayed to an upstream's `/embeddings`: the body sent (always
`encoding_format: float`: the client's format is applied here, one way for every
provider), the answer read back into `Embeddings`, and the request to one upstream with
its result recorded for the pool's health rules. `dimensions` is passed on as asked: the
upstream knows whether its model can shorten vectors (its 400 reaches the client)."""

from __future__ import annotations

import base64
import struct
from typing import Any

import httpx
import msgspec

from pipelines.embedding import EmbeddingRequest, Embeddings
from pipelines.upstream.errors import UpstreamFailure, from_status, from_transport
from pipelines.upstream.pool import Upstream, UpstreamPool

__all__ = ["embed_via", "embeddings_body", "read_embeddings"]

_ENCODER = msgspec.json.Encoder()


class _Item(msgspec.Struct):
    embedding: list[float] | str
    index: int


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0


class _Answer(msgspec.Struct):
    data: list[_Item]
    usage: _Usage | None = None


_DECODER = msgspec.json.Decoder(_Answer)


def embeddings_body(remote_model: str, request: EmbeddingRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": remote_model,
        "input": [item if isinstance(item, str) else list(item) for item in request.inputs],
        "encoding_format": "float",
    }
    if request.dimensions is not None:
        body["dimensions"] = request.dimensions
    return body


def _floats(embedding: list[float] | str) -> list[float]:
    if isinstance(embedding, list):
        return embedding
    raw = base64.b64decode(embedding, validate=True)  # an upstream that sent base64 anyway
    return list(struct.unpack(f"<{len(raw) // 4}f", raw[: len(raw) // 4 * 4]))


def read_embeddings(body: bytes, count: int, where: str) -> Embeddings:
    """The vectors of an upstream's answer in input order; `UpstreamFailure` (bad_response)
    for an answer that is not one vector per input."""
    try:
        answer = _DECODER.decode(body)
        items = sorted(answer.data, key=lambda item: item.index)
        vectors = [_floats(item.embedding) for item in items]
    except (msgspec.DecodeError, ValueError) as exc:
        raise UpstreamFailure(
            f"{where} sent embeddings that do not decode: {exc}", reason="bad_response", retryable=True
        ) from None
    if [item.index for item in items] != list(range(count)):
        raise UpstreamFailure(
            f"{where} answered {len(items)} embeddings for {count} inputs.", reason="bad_response", retryable=True
        )
    return Embeddings(vectors=vectors, prompt_tokens=answer.usage.prompt_tokens if answer.usage is not None else 0)


async def embed_via(
    pool: UpstreamPool, upstream: Upstream, request: EmbeddingRequest, remote_model: str, where: str
) -> Embeddings:
    """One request to `upstream`; its result goes to the pool's health record."""
    client = upstream.client
    if client is None:
        raise UpstreamFailure(f"{where} is not open (model unloaded).", reason="connect_error", retryable=True)
    body = _ENCODER.encode(embeddings_body(remote_model, request))
    headers = {"content-type": "application/json", "x-request-id": request.request_id}
    result = "bad_response"
    upstream.in_flight += 1
    try:
        try:
            response = await client.post(f"{upstream.base_url}/embeddings", content=body, headers=headers)
        except httpx.TransportError as exc:
            raise from_transport(exc, where) from exc
        if response.status_code != 200:
            raise from_status(response.status_code, response.content, where, remote_model)
        out = read_embeddings(response.content, len(request.inputs), where)
        result = "ok"
        return out
    except UpstreamFailure as failure:
        result = failure.reason
        raise
    finally:
        upstream.in_flight -= 1
        pool.record(upstream, result)
