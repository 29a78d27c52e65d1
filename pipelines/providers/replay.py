"""A provider that replays a recorded completion from a file, deterministically.

For tests and demos of the whole Harmony path without a model: each special token in the
file becomes one special piece, and the text between them is cut into pieces of at most
`replay_chunk_bytes` bytes, with no regard for UTF-8 boundaries, on purpose, so that
downstream decoding is exercised. Every piece counts as one token.

A model may also have a script (`replay_after_tools`): which file it replays then depends on
how many tool results the Harmony prompt holds (`<|start|>NAME to=assistant<|channel|>`
outside the messages' own text), so that an agent loop against it can run a tool and end.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.harmony import tokens as tk
from pipelines.harmony.split import split_special
from pipelines.providers.base import CancelToken, DecodeParams, LoadFailure, Prompt, Provider
from pipelines.types import Piece

if TYPE_CHECKING:
    from pipelines.config import ReplayModelConfig

__all__ = ["ReplayProvider", "replay_pieces", "tool_results"]

_TOOL_RESULT = f" to=assistant{tk.CHANNEL}"
"""How the header of a tool's result (authored by the tool, addressed to the assistant) ends."""


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


def tool_results(prompt: Prompt) -> int:
    """How many tool results a rendered Harmony prompt holds (a header forged inside a
    message's text does not count)."""
    text = prompt.text or ""
    count, at = 0, text.find(_TOOL_RESULT)
    while at >= 0:
        count += not any(start <= at < end for start, end in prompt.plain)
        at = text.find(_TOOL_RESULT, at + 1)
    return count


class ReplayProvider(Provider):
    """Yields the content of `config.replay_file` (or of its script's file) as pieces."""

    kind = "replay"
    stub = False
    config: ReplayModelConfig

    def __init__(self, config: ReplayModelConfig) -> None:
        super().__init__(config)
        self._script: list[list[Piece]] | None = None

    def _files(self) -> list[str]:
        return [self.config.replay_file, *self.config.replay_after_tools]

    @functools.cached_property
    def capabilities(self) -> dict[str, bool]:
        # A replay answers every request with its script: it takes a response format
        # (the script is what it is), as it takes tools.
        return {**super().capabilities, "json_schema": True}

    def foreseen_failure(self) -> LoadFailure | None:
        for path in self._files():
            if not Path(path).is_file():
                return LoadFailure("missing_file", f"cannot read replay file {path}: it does not exist")
        return None

    async def load(self) -> None:
        script = []
        for path in self._files():
            try:
                data = await asyncio.to_thread(Path(path).read_bytes)
            except OSError as exc:
                raise LoadFailure("missing_file", f"cannot read replay file {path}: {exc}") from exc
            script.append(replay_pieces(data, self.config.replay_chunk_bytes))
        self._script = script

    async def unload(self) -> None:
        self._script = None

    async def generate(self, prompt: Prompt, params: DecodeParams, cancel: CancelToken) -> AsyncGenerator[Piece, None]:
        if self._script is None:
            await self.load()
        assert self._script is not None
        pieces = self._script[min(tool_results(prompt), len(self._script) - 1)]
        for count, piece in enumerate(pieces[: max(params.max_tokens, 0)]):
            if count:
                await asyncio.sleep(0)
            if cancel.cancelled:
                return
            yield piece
