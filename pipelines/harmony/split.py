"""Cut Harmony special tokens out of raw bytes, for sources that lost the token boundaries.

A replay file or an upstream raw completion gives text in which `<|channel|>` is just
eleven characters. The parser wants pieces with control tokens flagged, so these helpers
turn such bytes into pieces: each known special token one `Piece(special=True)`, the text
between them plain pieces. The streaming form holds back a tail that could still grow into
a token, so a token split across two chunks is still found.
"""

from __future__ import annotations

from pipelines.harmony.tokens import SPECIAL_TOKENS
from pipelines.types import Piece

__all__ = ["SpecialTokenSplitter", "split_special"]

_TOKENS: tuple[bytes, ...] = tuple(sorted((t.encode() for t in SPECIAL_TOKENS), key=len, reverse=True))


class SpecialTokenSplitter:
    """Streaming splitter: `feed` chunks of bytes, then `flush` once at the end."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[Piece]:
        buffer = self._buffer + data
        pieces: list[Piece] = []
        text_start = 0
        search_from = 0
        while True:
            at = buffer.find(b"<|", search_from)
            if at < 0:
                # A trailing "<" may be the first byte of a token still to come.
                keep = len(buffer) - 1 if buffer.endswith(b"<") else len(buffer)
                _add_text(pieces, buffer[text_start:keep])
                self._buffer = buffer[keep:]
                return pieces
            token = next((t for t in _TOKENS if buffer.startswith(t, at)), None)
            if token is not None:
                _add_text(pieces, buffer[text_start:at])
                pieces.append(Piece(token, special=True))
                text_start = search_from = at + len(token)
                continue
            tail = buffer[at:]
            if any(t.startswith(tail) for t in _TOKENS):
                _add_text(pieces, buffer[text_start:at])
                self._buffer = tail
                return pieces
            search_from = at + 1

    def flush(self) -> list[Piece]:
        pieces: list[Piece] = []
        _add_text(pieces, self._buffer)
        self._buffer = b""
        return pieces


def split_special(text: bytes) -> list[Piece]:
    """Split a complete byte string into plain and special pieces."""
    splitter = SpecialTokenSplitter()
    return splitter.feed(text) + splitter.flush()


def _add_text(pieces: list[Piece], data: bytes) -> None:
    if data:
        pieces.append(Piece(data))
