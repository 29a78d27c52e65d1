"""Logging: text or one JSON object per line; every event becomes one log line."""

from __future__ import annotations

import json
import logging
import sys
import time

import msgspec

from pipelines.events import Event, EventBus, GenerationChunk

__all__ = ["configure_logging", "log_events"]

_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    """Human-readable lines; structured extras follow as key=value."""

    converter = time.gmtime  # type: ignore[assignment]

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [f"{k}={v}" for k, v in record.__dict__.items() if k not in _RESERVED and k != "event"]
        return f"{line} {' '.join(extras)}" if extras else line


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def log_events(bus: EventBus, logger: logging.Logger | None = None) -> None:
    """Subscribes a listener that writes each event as one structured line (`event`
    names it; `request_id` is among the fields where the event has one). Chunk events
    are logged only at debug level, since there is one per token."""
    log = logger or logging.getLogger("mia.events")

    def listener(event: Event) -> None:
        if isinstance(event, GenerationChunk) and not log.isEnabledFor(logging.DEBUG):
            return
        if not log.isEnabledFor(logging.INFO):
            return
        fields = msgspec.to_builtins(event)
        name = fields.pop("event")
        fields.pop("token_gaps", None)
        log.info(name, extra={"event": name, **{f"ev_{k}" if k in _RESERVED else k: v for k, v in fields.items()}})

    bus.subscribe(listener, chunks=log.isEnabledFor(logging.DEBUG))
