"""Harmony's special tokens, as the literal text that stands for each of them."""

from __future__ import annotations

from typing import Final

__all__ = [
    "CALL",
    "CHANNEL",
    "CONSTRAIN",
    "END",
    "END_OF_TEXT",
    "MESSAGE",
    "RETURN",
    "SPECIAL_TOKENS",
    "START",
    "START_OF_TEXT",
]

START: Final = "<|start|>"
MESSAGE: Final = "<|message|>"
END: Final = "<|end|>"
RETURN: Final = "<|return|>"
CALL: Final = "<|call|>"
CHANNEL: Final = "<|channel|>"
CONSTRAIN: Final = "<|constrain|>"
START_OF_TEXT: Final = "<|startoftext|>"
END_OF_TEXT: Final = "<|endoftext|>"

SPECIAL_TOKENS: Final[frozenset[str]] = frozenset(
    {START, MESSAGE, END, RETURN, CALL, CHANNEL, CONSTRAIN, START_OF_TEXT, END_OF_TEXT}
)
"""The named special tokens of `o200k_harmony` (the reserved ones never occur in output)."""
