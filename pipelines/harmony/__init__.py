"""Harmony, the gpt-oss format: render prompts, parse output, map channels to deltas.

Pure Python: no vocabulary file and no network. openai-harmony is only the reference
the tests compare against.
"""

from __future__ import annotations

from pipelines.harmony.mapping import HarmonyDeltaMapper, ToolCallRecord, new_tool_call_id
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
    "HarmonyDeltaMapper",
    "HarmonyParseError",
    "HarmonyParser",
    "MessageEnd",
    "MessageStart",
    "ParserEvent",
    "ParserState",
    "SpecialTokenSplitter",
    "TextDelta",
    "ToolCallRecord",
    "new_tool_call_id",
    "render_prompt",
    "schema_to_typescript",
    "split_special",
]
