"""Harmony, the gpt-oss format: render prompts, parse output into messages.

Pure Python: no vocabulary file and no network. openai-harmony is only the reference
the tests compare against.
"""

from __future__ import annotations

from pipelines.harmony.decoder import HarmonyDecoder
from pipelines.harmony.parser import (
    Done,
    HarmonyParseError,
    HarmonyParser,
    MessageEnd,
    MessageStart,
    ParserEvent,
    ParserState,
    TextDelta,
)
from pipelines.harmony.render import render_prompt
from pipelines.harmony.schema_ts import schema_to_typescript
from pipelines.harmony.split import SpecialTokenSplitter, split_special

__all__ = [
    "Done",
    "HarmonyDecoder",
    "HarmonyParseError",
    "HarmonyParser",
    "MessageEnd",
    "MessageStart",
    "ParserEvent",
    "ParserState",
    "SpecialTokenSplitter",
    "TextDelta",
    "render_prompt",
    "schema_to_typescript",
    "split_special",
]
