"""Logging: text or one JSON object per line; every event becomes one log line.

An event line is the line a record of the `mia.events` logger would give whose message is
the event's name and whose attributes are the event's fields (`event` first, then the
event's own, without `token_gaps`), so both formatters print them as they print any
`extra`. Every event is logged at INFO but `AdmissionChanged`, `ConnectionsChanged` and `ModelRouted` (DEBUG),
`GenerationChunk` only while the logger is enabled for DEBUG too (one per token). The
listener runs inline on the event loop, so it costs one level check when the line is not
wanted; when it is, the served gateway formats the line from the event's fields without
making a record (`log_events(..., lines=)`), and the handler writes a loop turn's lines
with one write.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any

import msgspec

from pipelines.events import (
    AdmissionChanged,
    ConnectionsChanged,
    Event,
    EventBus,
    GenerationChunk,
    ModelRouted,
    StorageOperation,
)

__all__ = ["EventLineFormatter", "LoopBatchedHandler", "configure_logging", "log_events"]

_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}

EVENT_LEVEL = logging.INFO
"""The level of every event line."""
CHUNK_GATE = logging.DEBUG
"""`GenerationChunk` lines are written only while the logger is enabled for this level."""
QUIET_EVENTS: frozenset[type[Event]] = frozenset({AdmissionChanged, ConnectionsChanged, ModelRouted, StorageOperation})
"""Logged at DEBUG. `AdmissionChanged` and `ConnectionsChanged`: two per request or
connection, and the running/waiting/connections gauges already carry them. `ModelRouted`: `GenerationStarted` names the
same model, pipeline and stub, and a request refused before it starts has its model in
`RequestFinished`. `StorageOperation`: one or more per stored response, in the storage
metrics (a failure is also a warning of the store's own). Each INFO line costs a busy stub gateway about 2 % of its throughput."""

_encoder = msgspec.json.Encoder(enc_hook=str)
_LEVEL_NAMES = {level: logging.getLevelName(level) for level in (10, 20, 30, 40, 50)}


def _msecs(created: float) -> float:
    """`LogRecord.msecs` for a record made at `created`."""
    return (created - int(created)) * 1000


def _json_line(out: dict[str, Any]) -> str:
    """One JSON object as `json.dumps(out, default=str, ensure_ascii=False)` writes it, by
    msgspec: `format(indent=0)` puts back the ", " and ": " separators. Only float spelling
    can differ (`1e-05` is `0.00001` here; NaN and infinities are `null`, valid JSON)."""
    try:
        return msgspec.json.format(_encoder.encode(out), indent=0).decode()
    except (TypeError, ValueError, OverflowError):  # a key msgspec refuses, an int beyond 64 bits
        return json.dumps(out, default=str, ensure_ascii=False)


class EventLineFormatter(logging.Formatter):
    """A formatter that can also write an event line straight from the event's fields,
    the line `format` writes for the event's record, without making the record."""

    def format_event(self, logger: str, levelno: int, fields: dict[str, Any]) -> str:
        raise NotImplementedError


class _JsonFormatter(EventLineFormatter):
    def format_event(self, logger: str, levelno: int, fields: dict[str, Any]) -> str:
        out = {"ts": fields["ts"], "level": _LEVEL_NAMES[levelno].lower(), "logger": logger, "message": fields["event"]}
        out.update(fields)
        return _json_line(out)

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
        return _json_line(out)


class _TextFormatter(EventLineFormatter):
    """Human-readable lines; structured extras follow as key=value."""

    converter = time.gmtime  # type: ignore[assignment]

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        self._second: tuple[int, str] = (-1, "")
        """The last whole second formatted, and its text (strftime is most of a line's cost)."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        """`logging.Formatter.formatTime` (UTC, `2025-01-31 12:00:00,123`), one strftime a second."""
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        return self._stamp(record.created, record.msecs)

    def _stamp(self, created: float, msecs: float) -> str:
        second = int(created)
        cached, stamp = self._second
        if second != cached:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))
            self._second = (second, stamp)
        return f"{stamp},{int(msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [f"{k}={v}" for k, v in record.__dict__.items() if k not in _RESERVED and k != "event"]
        return f"{line} {' '.join(extras)}" if extras else line

    def format_event(self, logger: str, levelno: int, fields: dict[str, Any]) -> str:
        # this formatter's own format, with what a record would give it (asctime,
        # levelname, name, message: all `configure_logging`'s format asks for)
        ts = fields["ts"]
        line = (self._fmt or "%(message)s") % {
            "asctime": self._stamp(ts, _msecs(ts)),
            "levelname": _LEVEL_NAMES[levelno],
            "name": logger,
            "message": fields["event"],
        }
        extras = " ".join([f"{k}={v}" for k, v in fields.items() if k != "event"])
        return f"{line} {extras}"


class LoopBatchedHandler(logging.StreamHandler):
    """A stream handler that writes the lines of one event-loop turn with one write.

    Under load every request logs a handful of event lines, and a write (and flush) per
    line cost the stub path about a third of its throughput. Lines emitted on the event
    loop thread are held until the loop's next turn (`call_soon`), so they reach the stream
    within that turn, in order; lines from other threads, and warnings and errors, are
    written at once (after what is held)."""

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._held: list[str] = []
        self._scheduled: asyncio.AbstractEventLoop | None = None
        """The loop a write of the held lines is scheduled on (None: none is)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self._hold(line, record.levelno)

    def write_line(self, line: str, levelno: int) -> None:
        """Writes a line made without a record (an event line) as `emit` writes a record's."""
        with self.lock:  # type: ignore[union-attr]
            self._hold(line + self.terminator, levelno)

    def _hold(self, line: str, levelno: int) -> None:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        self._held.append(line)
        if loop is None or levelno >= logging.WARNING:
            self._write_held()
        elif self._scheduled is not loop:
            # (a write scheduled on another loop, one that has since stopped, never comes)
            self._scheduled = loop
            loop.call_soon(self._flush_turn)

    def _flush_turn(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._scheduled = None
            self._write_held()

    def _write_held(self) -> None:
        held, self._held = self._held, []
        if held:
            try:
                self.stream.write("".join(held))
                self.stream.flush()
            except Exception:
                self.handleError(logging.makeLogRecord({"msg": "log write failed"}))

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_held()
        super().flush()


def configure_logging(level: str, fmt: str) -> LoopBatchedHandler:
    """Points the root logger at one `LoopBatchedHandler` on stderr and returns it (give it
    to `log_events`, so event lines skip the logging machinery)."""
    handler = LoopBatchedHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    return handler


def _renames(cls: type[Event]) -> dict[str, str] | None:
    """Field -> attribute for the fields of `cls` that a LogRecord already has (`ev_` prefix);
    None when there are none (every event today)."""
    renames = {f: f"ev_{f}" for f in cls.__struct_fields__ if f in _RESERVED}
    return renames or None


def log_events(bus: EventBus, logger: logging.Logger | None = None, *, lines: LoopBatchedHandler | None = None) -> None:
    """Subscribes a listener that writes each event as one structured line (`event`
    names it; `request_id` is among the fields where the event has one). Chunk events
    are logged only at debug level, since there is one per token.

    With `lines` (the handler `configure_logging` returned), a wanted event line is
    formatted from the event's fields and handed to that handler directly: the same line,
    a third of the cost (no record, no handler chain; 3 against 9 µs a line measured).
    The logger's level still decides which events are written."""
    log = logger or logging.getLogger("mia.events")
    enabled = log.isEnabledFor  # cached per level by logging; cleared when levels change
    renames: dict[type[Event], dict[str, str] | None] = {}
    direct: tuple[LoopBatchedHandler, EventLineFormatter] | None = None
    if lines is not None and isinstance(lines.formatter, EventLineFormatter):
        direct = (lines, lines.formatter)
    name = log.name

    def listener(event: Event) -> None:
        cls = type(event)
        level = logging.DEBUG if cls in QUIET_EVENTS else EVENT_LEVEL
        if not enabled(level) or (cls is GenerationChunk and not enabled(CHUNK_GATE)):
            return
        fields = msgspec.to_builtins(event)  # {"event": name, "ts": …, …}: already the line's order
        fields.pop("token_gaps", None)
        if cls not in renames:
            renames[cls] = _renames(cls)
        if (rename := renames[cls]) is not None:
            fields = {rename.get(k, k): v for k, v in fields.items()}
        if direct is not None:
            handler, formatter = direct
            handler.write_line(formatter.format_event(name, level, fields), level)
            return
        # What `log.info(name, extra=fields)` does, without its caller lookup (a stack
        # walk per line that nothing prints); the record's time is the event's.
        record = log.makeRecord(name, level, __file__, 0, fields["event"], (), None, "listener")
        record.created = ts = fields["ts"]
        record.msecs = _msecs(ts)
        record.__dict__.update(fields)
        log.handle(record)

    bus.subscribe(listener, chunks=log.isEnabledFor(CHUNK_GATE))
