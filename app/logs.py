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
import operator
import sys
import time
import types
import typing
from collections.abc import Callable
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
_UNLOGGED = "token_gaps"
"""The one event field that is not logged (a latency sample per token; the metrics use it).
It is `GenerationCompleted`'s last field, so its JSON is cut off the end of the event's."""


def _msecs(created: float) -> float:
    """`LogRecord.msecs` for a record made at `created`."""
    return (created - int(created)) * 1000


def _json_line(out: dict[str, Any]) -> str:
    """One compact JSON object (msgspec; anything it cannot encode as its `str()`). Floats
    are spelled as msgspec spells them (`1e-05`; NaN and infinities are `null`, valid JSON)."""
    try:
        return _encoder.encode(out).decode()
    except (TypeError, ValueError, OverflowError):  # a key msgspec refuses, an int beyond 64 bits
        return json.dumps(out, default=str, ensure_ascii=False, separators=(",", ":"))


def _text_value(value: Any) -> str:
    """A structured extra's value in a text line: strings as they are, containers as
    compact JSON (a third of the cost of their repr, and readable by machines), the rest as
    its `str()`."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list | tuple):
        try:
            return _encoder.encode(value).decode()
        except (TypeError, ValueError, OverflowError):
            return str(value)
    return str(value)


def _maybe_container(annotation: Any) -> bool:
    """Whether a field of this type can hold a dict, list or tuple (or anything)."""
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation) or annotation
    if origin in (typing.Union, types.UnionType):
        return any(_maybe_container(arg) for arg in typing.get_args(annotation))
    return isinstance(origin, type) and issubclass(origin, dict | list | tuple)


class _EventShape:
    """What writing one event class's lines needs, worked out once per class."""

    __slots__ = ("containers", "fields", "json_head", "renamed", "tag", "text", "values")

    def __init__(self, cls: type[Event]) -> None:
        infos = [f for f in msgspec.structs.fields(cls) if f.name not in (_UNLOGGED, "ts")]
        renames = {f.name: f"ev_{f.name}" for f in infos if f.name in _RESERVED}
        self.renamed = bool(renames)
        """Some field shares a name with a LogRecord attribute: it is logged as `ev_<name>`."""
        self.fields = tuple((f.name, renames.get(f.name, f.name)) for f in infos)
        self.tag = str(cls.__struct_config__.tag)
        self.json_head = len(_encoder.encode({"event": self.tag, "ts": 0})) - 2
        """Bytes of `{"event":"<tag>","ts":` that start the event's own JSON."""
        getter = operator.attrgetter("ts", *(f.name for f in infos))
        self.values: Callable[[Event], tuple[Any, ...]] = getter if infos else lambda event: (event.ts,)
        """`ts` and the logged fields' values, in one call."""
        self.text = " ".join(["ts=%s", *(f"{name}=%s" for _, name in self.fields)])
        """The text line's extras, to fill with `values` (`%s` is the `str()` an f-string gives)."""
        self.containers = tuple(i for i, f in enumerate(infos, 1) if _maybe_container(f.type))
        """Positions in `values` that may hold a container (written as JSON)."""

    def as_dict(self, event: Event) -> dict[str, Any]:
        """The line's fields in order (`event`, `ts`, then the event's own), as builtins."""
        fields = msgspec.to_builtins(event)
        fields.pop(_UNLOGGED, None)
        if self.renamed:
            fields = {f"ev_{k}" if k in _RESERVED else k: v for k, v in fields.items()}
        return fields


class EventLineFormatter(logging.Formatter):
    """A formatter that can also write an event line straight from the event, the line
    `format` writes for the event's record, without making the record."""

    def format_event(self, logger: str, levelno: int, event: Event, shape: _EventShape) -> str:
        raise NotImplementedError


class _JsonFormatter(EventLineFormatter):
    def format_event(self, logger: str, levelno: int, event: Event, shape: _EventShape) -> str:
        try:
            own = None if shape.renamed else _encoder.encode(event)
        except (TypeError, ValueError, OverflowError):
            own = None
        if own is None:  # renamed fields, or a value msgspec refuses: the line from a dict
            return self.format_fields(logger, levelno, shape.as_dict(event))
        # The event's own JSON is `{"event":"<tag>","ts":<ts>,<fields>}`: the line is the
        # same object with the record's keys spliced in after `ts` (the order `format` gives).
        comma = own.find(b",", shape.json_head)
        if comma < 0:
            comma = len(own) - 1
        ts, rest = own[shape.json_head : comma], own[comma:]
        if event.__struct_fields__[-1] == _UNLOGGED:
            rest = rest[: rest.rfind(b',"' + _UNLOGGED.encode() + b'":')] + b"}"
        level = _LEVEL_NAMES[levelno].lower()
        head = (
            f'{{"ts":{ts.decode()},"level":"{level}","logger":"{logger}","message":"{shape.tag}","event":"{shape.tag}"'
        )
        return head + rest.decode()

    def format_fields(self, logger: str, levelno: int, fields: dict[str, Any]) -> str:
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
    """Human-readable lines; structured extras follow as key=value (containers as JSON)."""

    converter = time.gmtime  # type: ignore[assignment]

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        self._second: tuple[int, str] = (-1, "")
        """The last whole second formatted, and its text (strftime is most of a line's cost)."""
        self._heads: dict[tuple[str, int, str], str] = {}
        """An event line's start by logger, level and event, to put the time in."""

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
        extras = [f"{k}={_text_value(v)}" for k, v in record.__dict__.items() if k not in _RESERVED and k != "event"]
        return f"{line} {' '.join(extras)}" if extras else line

    def format_event(self, logger: str, levelno: int, event: Event, shape: _EventShape) -> str:
        # this formatter's own format, with what a record would give it (asctime,
        # levelname, name, message: all `configure_logging`'s format asks for)
        key = (logger, levelno, shape.tag)
        head = self._heads.get(key)
        if head is None:
            # the line up to its extras, with `{}` where the time goes (the only part that changes)
            head = self._heads[key] = (self._fmt or "%(message)s").replace("{", "{{").replace("}", "}}") % {
                "asctime": "{}",
                "levelname": _LEVEL_NAMES[levelno],
                "name": logger,
                "message": shape.tag,
            }
        ts = event.ts
        line = head.format(self._stamp(ts, _msecs(ts)))
        values = shape.values(event)
        if shape.containers:
            listed = list(values)
            for i in shape.containers:
                listed[i] = _text_value(listed[i])
            values = tuple(listed)
        return f"{line} {shape.text % values}"


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
    # httpx writes an INFO line per upstream request; `UpstreamRequestFinished` already
    # is one (with the model, the upstream and the outcome). Its warnings still come.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    return handler


def log_events(bus: EventBus, logger: logging.Logger | None = None, *, lines: LoopBatchedHandler | None = None) -> None:
    """Subscribes a listener that writes each event as one structured line (`event`
    names it; `request_id` is among the fields where the event has one). Chunk events
    are logged only at debug level, since there is one per token.

    With `lines` (the handler `configure_logging` returned), a wanted event line is
    formatted from the event itself and handed to that handler directly: the same line,
    without a record, a dict of its fields or the handler chain (3 against 13 µs a line
    in text, measured). The logger's level still decides which events are written."""
    log = logger or logging.getLogger("mia.events")
    enabled = log.isEnabledFor  # cached per level by logging; cleared when levels change
    shapes: dict[type[Event], _EventShape] = {}
    direct: tuple[LoopBatchedHandler, EventLineFormatter] | None = None
    if lines is not None and isinstance(lines.formatter, EventLineFormatter):
        direct = (lines, lines.formatter)
    name = log.name

    def listener(event: Event) -> None:
        cls = type(event)
        level = logging.DEBUG if cls in QUIET_EVENTS else EVENT_LEVEL
        if not enabled(level) or (cls is GenerationChunk and not enabled(CHUNK_GATE)):
            return
        shape = shapes.get(cls)
        if shape is None:
            shape = shapes[cls] = _EventShape(cls)
        if direct is not None:
            handler, formatter = direct
            handler.write_line(formatter.format_event(name, level, event, shape), level)
            return
        # What `log.info(name, extra=fields)` does, without its caller lookup (a stack
        # walk per line that nothing prints); the record's time is the event's.
        fields = shape.as_dict(event)
        record = log.makeRecord(name, level, __file__, 0, fields["event"], (), None, "listener")
        record.created = ts = fields["ts"]
        record.msecs = _msecs(ts)
        record.__dict__.update(fields)
        log.handle(record)

    bus.subscribe(listener, chunks=log.isEnabledFor(CHUNK_GATE))
