"""Harmony, the gpt-oss format: render prompts, parse output into messages.

Pure Python: no vocabulary file and no network. openai-harmony is only the reference
the tests compare against. The modules: `render` (prompts), `parser` (the token-level
state machine), `decoder` (tokens to messages), `schema_ts`, `split`, `tokens`.
"""

from __future__ import annotations

from pipelines.harmony.decoder import HarmonyDecoder
from pipelines.harmony.parser import HarmonyParser
from pipelines.harmony.render import render_prompt

__all__ = ["HarmonyDecoder", "HarmonyParser", "render_prompt"]
