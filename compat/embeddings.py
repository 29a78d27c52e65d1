"""The embeddings wire (`POST /v1/embeddings`) as OpenAI documents it: the request, its
translation into `pipelines.embedding.EmbeddingRequest`, and the answer, with vectors as
JSON numbers or as base64 of little-endian float32 (what the openai SDK asks for by
default, and decodes)."""

from __future__ import annotations

import base64
import struct
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from compat.refusals import MalformedBody
from pipelines.embedding import EmbeddingInput, EmbeddingRequest, EmbeddingResult

__all__ = [
    "EmbeddingList",
    "EmbeddingObject",
    "EmbeddingUsage",
    "EmbeddingsRequest",
    "decode_embeddings_request",
    "to_embedding_list",
    "to_internal",
]

Text = Annotated[str, Meta(min_length=1)]
TokenId = Annotated[int, Meta(ge=0, lt=2**31)]
"""A token id: llama.cpp's (and every tokenizer's) fit in 32 bits."""
TokenIds = Annotated[list[TokenId], Meta(min_length=1)]


class EmbeddingsRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    """POST /v1/embeddings. `input` is a string, a list of strings, a list of token ids,
    or a list of lists of token ids (one kind per request); unknown fields are ignored."""

    input: Text | Annotated[list[Text | TokenId | TokenIds], Meta(min_length=1)]
    model: str
    dimensions: Annotated[int, Meta(ge=1)] | None = None
    encoding_format: Literal["float", "base64"] | None = None
    user: str | None = None


class EmbeddingObject(msgspec.Struct, kw_only=True):
    embedding: list[float] | str
    """The vector: numbers, or base64 of its little-endian float32 values."""
    index: int
    object: Literal["embedding"] = "embedding"


class EmbeddingUsage(msgspec.Struct, kw_only=True):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(msgspec.Struct, kw_only=True):
    data: list[EmbeddingObject]
    model: str
    usage: EmbeddingUsage
    object: Literal["list"] = "list"


_DECODER = msgspec.json.Decoder(EmbeddingsRequest)


def decode_embeddings_request(body: bytes) -> EmbeddingsRequest:
    """Decodes and validates a body; raises `msgspec.DecodeError` (with its `- at $.path`)."""
    return _DECODER.decode(body)


def to_internal(wire: EmbeddingsRequest, request_id: str) -> EmbeddingRequest:
    """The request for the pipelines; a list that mixes kinds of input is a 400 on `input`."""
    raw = wire.input
    inputs: tuple[EmbeddingInput, ...]
    if isinstance(raw, str):
        inputs = (raw,)
    elif all(isinstance(x, int) for x in raw):
        inputs = (tuple(x for x in raw if isinstance(x, int)),)
    elif all(isinstance(x, str) for x in raw):
        inputs = tuple(x for x in raw if isinstance(x, str))
    elif all(isinstance(x, list) for x in raw):
        inputs = tuple(tuple(x) for x in raw if isinstance(x, list))
    else:
        raise MalformedBody(
            "Invalid value for 'input': a list of strings, of token ids, or of lists of token ids, not a mix.",
            param="input",
            code="invalid_value",
        )
    return EmbeddingRequest(request_id=request_id, model=wire.model, inputs=inputs, dimensions=wire.dimensions)


def _base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def to_embedding_list(result: EmbeddingResult, encoding_format: Literal["float", "base64"] | None) -> EmbeddingList:
    encode = _base64 if encoding_format == "base64" else None
    return EmbeddingList(
        data=[
            EmbeddingObject(embedding=encode(v) if encode is not None else v, index=i)
            for i, v in enumerate(result.vectors)
        ],
        model=result.model_id,
        usage=EmbeddingUsage(prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens),
    )
