"""Reading the JSON event lines a served gateway writes."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["events"]


def events(log_text: str, *names: str) -> list[dict[str, Any]]:
    """The event log lines, in order, optionally only those with the given event names."""
    out = []
    for line in log_text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "event" in rec and (not names or rec["event"] in names):
            out.append(rec)
    return out
