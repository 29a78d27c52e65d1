"""A provider that replays a recorded completion from a file, deterministically.

For tests and demos of the whole Harmony path without a model: each special token in the
file becomes one special piece, and the text between them is cut into pieces of at most
`replay_chunk_bytes` bytes, with no regard for UTF-8 boundaries, on purpose, so that
downstream decoding is exercised. Every piece counts as one token.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.harmony.split import split_special
from pipelines.providers.base import CancelToken, DecodeParams, LoadFailure, Prompt, Provider
from pipelines.types import Piece

if TYPE_CHECKING:
    from pipelines.config import ReplayModelConfig

__all__ = ["ReplayProvider", "replay_pieces"]


def replay_pieces(data: bytes, chunk_bytes: int) -> list[Piece]:
    """The pieces a replay of `data` yields, in order."""
    pieces: list[Piece] = []
    for piece in split_special(data):
        if piece.special:
            pieces.append(piece)
            continue
        text = piece.data
        pieces.extend(Piece(text[i : i + chunk_bytes]) for i in range(0, len(text), chunk_bytes))
    return pieces


class ReplayProvider(Provider):
    """Yields the content of `config.replay_file` as pieces."""

    kind = "replay"
    stub = False
    config: ReplayModelConfig

    def __init__(self, config: ReplayModelConfig) -> None:
        super().__init__(config)
        self._pieces: list[Piece] | None = None

    @property
    def capabilities(self) -> dict[str, bool]:
        # A replay answers every request with its script: it takes a response format
        # (the script is what it is), as it takes tools.
        return {**super().capabilities, "json_schema": True}

    def foreseen_failure(self) -> LoadFailure | None:
        path = self.config.replay_file
        if not Path(path).is_file():
            return LoadFailure("missing_file", f"cannot read replay file {path}: it does not exist")
        return None

    async def load(self) -> None:
        path = self.config.replay_file
        try:
            data = await asyncio.to_thread(Path(path).read_bytes)
        except OSError as exc:
            raise LoadFailure("missing_file", f"cannot read replay file {path}: {exc}") from exc
        self._pieces = replay_pieces(data, self.config.replay_chunk_bytes)

    async def unload(self) -> None:
        self._pieces = None

    async def generate(self, prompt: Prompt, params: DecodeParams, cancel: CancelToken) -> AsyncGenerator[Piece, None]:
        if self._pieces is None:
            await self.load()
        assert self._pieces is not None
        for count, piece in enumerate(self._pieces[: max(params.max_tokens, 0)]):
            if count:
                await asyncio.sleep(0)
            if cancel.cancelled:
                return
            yield piece
