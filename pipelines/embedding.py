"""Embeddings on the generation side: the internal request and what providers answer it
with, and the arithmetic every embedding model shares (unit length, shortening)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

from pipelines.errors import Unsupported

__all__ = [
    "EmbeddingInput",
    "EmbeddingRequest",
    "EmbeddingResult",
    "Embeddings",
    "check_dimensions",
    "normalized",
    "shaped",
]

EmbeddingInput = str | tuple[int, ...]
"""One input: text, or token ids taken as they are (no special tokens added)."""


class EmbeddingRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One `/v1/embeddings` request, whatever wire it came in on."""

    request_id: str
    model: str
    inputs: tuple[EmbeddingInput, ...]
    dimensions: int | None = None


class Embeddings(msgspec.Struct, frozen=True, kw_only=True):
    """A provider's answer: one vector per input, in order, and the tokens it read."""

    vectors: list[list[float]]
    prompt_tokens: int


class EmbeddingResult(msgspec.Struct, frozen=True, kw_only=True):
    """The service's answer: the vectors in their final length, and who made them."""

    model_id: str
    vectors: list[list[float]]
    prompt_tokens: int
    stub: bool = False


def normalized(vector: Sequence[float]) -> list[float]:
    """`vector` scaled to unit length, as OpenAI's embeddings are (a zero vector stays zero)."""
    norm = math.sqrt(math.fsum(x * x for x in vector))
    if norm == 0.0:
        return [0.0] * len(vector)
    return [x / norm for x in vector]


def check_dimensions(dimensions: int | None, length: int, *, matryoshka: bool, model_id: str) -> None:
    """Refuses a `dimensions` the model cannot give: longer than its vectors, or shorter
    when the model was not trained for shortening (`matryoshka`)."""
    if dimensions is None or dimensions == length:
        return
    if dimensions > length:
        raise Unsupported(
            f"Model '{model_id}' gives vectors of {length} dimensions; {dimensions} were asked for.",
            param="dimensions",
        )
    if not matryoshka:
        raise Unsupported(
            f"Model '{model_id}' does not support shortening its embeddings: `dimensions` may only be {length}.",
            param="dimensions",
        )


def shaped(vectors: list[list[float]], dimensions: int | None) -> list[list[float]]:
    """The vectors cut to `dimensions` (already checked) and normalised again."""
    if dimensions is None:
        return vectors
    return [v if len(v) == dimensions else normalized(v[:dimensions]) for v in vectors]
