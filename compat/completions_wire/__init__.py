"""The legacy completions wire (`POST /v1/completions`): its request and translation
(`request.py`), the objects it answers with (`objects.py`), and their encoding, whole or
streamed (`encode.py`)."""

from __future__ import annotations

from compat.completions_wire.encode import DONE, CompletionStreamEncoder, to_completion, total_usage
from compat.completions_wire.objects import Completion
from compat.completions_wire.request import (
    CompletionRequest,
    decode_completion_request,
    prompts_of,
    to_internal,
)

__all__ = [
    "DONE",
    "Completion",
    "CompletionRequest",
    "CompletionStreamEncoder",
    "decode_completion_request",
    "prompts_of",
    "to_completion",
    "to_internal",
    "total_usage",
]
