"""What every tokenizer of a provider checks the same way: token ids a client sends."""

from __future__ import annotations

from collections.abc import Iterable

from pipelines.errors import InvalidRequest

__all__ = ["check_token_ids"]


def check_token_ids(tokens: Iterable[int], n_vocab: int, *, param: str, vocabulary: str) -> None:
    """A 400 naming `param[i]` for the first id outside `0..n_vocab-1` (`vocabulary` says
    what the vocabulary is, for the message)."""
    for i, token in enumerate(tokens):
        if not 0 <= token < n_vocab:
            raise InvalidRequest(
                f"Token id {token} is not in this model's vocabulary ({vocabulary}).",
                param=f"{param}[{i}]",
                code="invalid_value",
            )
