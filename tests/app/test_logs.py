"""The event log: one line per event, in text or JSON, at the levels the docs promise."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Iterator

import pytest

from app.logs import LoopBatchedHandler, _TextFormatter, configure_logging, log_events
from pipelines.events import (
    AdmissionChanged,
    ConnectionsChanged,
    Event,
    EventBus,
    GenerationChunk,
    GenerationCompleted,
    ModelLoaded,
    ModelRouted,
    PromptProcessed,
)

TS = 1763779200.25


class Configure:
    """`configure_logging(level, fmt)` writing to a buffer, and event lines subscribed as the
    gateway does (`direct`: straight to the handler) or through the logging machinery."""

    def __init__(self, direct: bool) -> None:
        self.direct = direct
        self.lines: LoopBatchedHandler | None = None

    def __call__(self, level: str, fmt: str) -> io.StringIO:
        handler = configure_logging(level, fmt)
        buf = io.StringIO()
        handler.setStream(buf)
        self.lines = handler if self.direct else None
        return buf

    def subscribe(self, bus: EventBus) -> None:
        log_events(bus, lines=self.lines)

    def emit(self, *events: Event) -> EventBus:
        bus = EventBus()
        self.subscribe(bus)
        for event in events:
            bus.emit(event)
        return bus


@pytest.fixture(params=["direct", "record"])
def configure(request: pytest.FixtureRequest) -> Iterator[Configure]:
    """Both ways an event line is written must give the same lines; the root logger is put back after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield Configure(direct=request.param == "direct")
    root.handlers[:] = handlers
    root.setLevel(level)


def completed() -> GenerationCompleted:
    return GenerationCompleted(
        ts=TS,
        request_id="chatcmpl-1",
        model_id="m",
        pipeline="lightweight",
        stub=False,
        stop_reason="eos",
        result_summary={"usage": {"prompt_tokens": 3, "completion_tokens": 2}, "finish_reason": "stop"},
        token_gaps=(0.01, 0.02),
    )


def chunk() -> GenerationChunk:
    return GenerationChunk(ts=TS, request_id="chatcmpl-1", model_id="m", channel="final", text="héllo\n")


def test_json_line(configure: Configure) -> None:
    out = configure("INFO", "json")
    configure.emit(completed())
    # compact JSON: the event's own `ts`, the event name twice, its fields in order, no `token_gaps`
    assert out.getvalue() == (
        '{"ts":1763779200.25,"level":"info","logger":"mia.events","message":"GenerationCompleted",'
        '"event":"GenerationCompleted","request_id":"chatcmpl-1","model_id":"m","pipeline":"lightweight",'
        '"stub":false,"stop_reason":"eos","result_summary":{"usage":{"prompt_tokens":3,'
        '"completion_tokens":2},"finish_reason":"stop"}}\n'
    )


def test_json_lines_parse_and_keep_text_as_is(configure: Configure) -> None:
    out = configure("DEBUG", "json")
    configure.emit(chunk(), PromptProcessed(ts=TS, request_id=None, model_id="m", prompt_tokens=9, cached_tokens=4,
                                  evaluated_tokens=5, slot=1, seconds=0.5))  # fmt: skip
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["event"] == "GenerationChunk" and first["text"] == "héllo\n"
    assert '"text":"héllo\\n"' in out.getvalue()  # not ASCII-escaped
    assert second == {
        "ts": TS,
        "level": "info",
        "logger": "mia.events",
        "message": "PromptProcessed",
        "event": "PromptProcessed",
        "request_id": None,
        "model_id": "m",
        "prompt_tokens": 9,
        "cached_tokens": 4,
        "evaluated_tokens": 5,
        "slot": 1,
        "seconds": 0.5,
    }


def test_text_line(configure: Configure) -> None:
    out = configure("INFO", "text")
    configure.emit(completed())
    line = out.getvalue()
    stamp, rest = line[:23], line[24:]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}", stamp), line
    assert rest == (
        "INFO mia.events: GenerationCompleted ts=1763779200.25 request_id=chatcmpl-1 model_id=m "
        "pipeline=lightweight stub=False stop_reason=eos "
        'result_summary={"usage":{"prompt_tokens":3,"completion_tokens":2},"finish_reason":"stop"}\n'
    )


def test_other_records_keep_their_extras_and_tracebacks(configure: Configure) -> None:
    out = configure("INFO", "json")
    log = logging.getLogger("app.somewhere")
    log.warning(
        "count %d", 3, extra={"request_id": "r9", "when": object.__new__(type("O", (), {"__str__": lambda _: "O!"}))}
    )
    try:
        raise ValueError("nope")
    except ValueError:
        log.exception("failed")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "count 3" and first["level"] == "warning" and first["logger"] == "app.somewhere"
    assert (first["request_id"], first["when"]) == ("r9", "O!")  # anything else as its str()
    assert second["level"] == "error" and "ValueError: nope" in second["exc"]


def test_levels(configure: Configure) -> None:
    # every event line is INFO; chunks (one per token) only when DEBUG is on as well
    out = configure("INFO", "json")
    bus = configure.emit(chunk(), completed())
    assert not bus.wants_chunks
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == ["GenerationCompleted"]

    out = configure("DEBUG", "json")
    bus = configure.emit(chunk(), completed())
    assert bus.wants_chunks
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["event"], r["level"]) for r in lines] == [("GenerationChunk", "info"), ("GenerationCompleted", "info")]

    out = configure("WARNING", "text")
    configure.emit(chunk(), completed(), ModelLoaded(model_id="m", provider="stub", role="primary"))
    assert out.getvalue() == ""


def test_the_level_is_read_per_event(configure: Configure) -> None:
    out = configure("WARNING", "json")
    bus = EventBus()
    configure.subscribe(bus)
    bus.emit(completed())
    logging.getLogger().setLevel(logging.INFO)
    bus.emit(completed())
    assert len(out.getvalue().splitlines()) == 1


class _Odd(Event, frozen=True, kw_only=True):
    name: str
    lineno: int


def test_fields_named_like_record_attributes_get_a_prefix(configure: Configure) -> None:
    out = configure("INFO", "json")
    configure.emit(_Odd(ts=TS, name="n", lineno=7))
    record = json.loads(out.getvalue())
    assert (record["logger"], record["ev_name"], record["ev_lineno"]) == ("mia.events", "n", 7)


def test_text_timestamps_match_the_standard_formatter() -> None:
    ours = _TextFormatter("%(asctime)s %(message)s")
    plain = logging.Formatter("%(asctime)s %(message)s")
    plain.converter = time.gmtime
    record = logging.makeLogRecord({"msg": "x"})
    for created in (TS, TS + 0.5, TS + 0.999, TS + 1.0, TS + 61.2, TS - 3600.001):
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert ours.format(record) == plain.format(record), created


# --- writing: one write per event-loop turn ---------------------------------------------------


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        return super().write(s)


async def test_lines_of_one_loop_turn_are_written_together_in_order() -> None:
    import asyncio

    from app.logs import LoopBatchedHandler

    stream = CountingStream()
    handler = LoopBatchedHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("test.batched")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        for i in range(5):
            log.info("line %d", i)
        assert stream.getvalue() == ""  # held until the loop's next turn
        await asyncio.sleep(0)
        assert stream.getvalue() == "".join(f"line {i}\n" for i in range(5))
        assert stream.writes == 1
        log.info("held")
        log.warning("at once")  # a warning writes what is held, then itself, now
        assert stream.getvalue().endswith("held\nat once\n")
    finally:
        log.removeHandler(handler)


def test_lines_outside_an_event_loop_are_written_at_once() -> None:
    from app.logs import LoopBatchedHandler

    stream = CountingStream()
    handler = LoopBatchedHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.handle(logging.makeLogRecord({"msg": "now", "levelno": logging.INFO}))
    assert stream.getvalue() == "now\n"


@pytest.mark.parametrize(
    "event",
    [
        AdmissionChanged(model_id="m", running=1, waiting=0),
        ModelRouted(request_id="r", model_id="m", pipeline="lightweight", stub=True),
        ConnectionsChanged(open=3),
    ],
)
def test_admission_changes_and_routing_are_debug_lines(configure: Configure, event: Event) -> None:
    for level, expected in (("info", 0), ("debug", 1)):
        buf = configure(level, "json")
        bus = EventBus()
        configure.subscribe(bus)
        bus.emit(event)
        logging.getLogger().handlers[0].flush()
        assert buf.getvalue().count(f'"event":"{type(event).__name__}"') == expected, level


def test_a_line_held_by_a_loop_that_stopped_does_not_hold_up_the_next_loop() -> None:
    import asyncio

    from app.logs import LoopBatchedHandler

    stream = CountingStream()
    handler = LoopBatchedHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))

    async def log_second() -> None:
        handler.handle(logging.makeLogRecord({"msg": "second", "levelno": logging.INFO}))
        await asyncio.sleep(0)

    def log_first() -> None:
        handler.handle(logging.makeLogRecord({"msg": "first", "levelno": logging.INFO}))

    loop = asyncio.new_event_loop()
    loop.call_soon(log_first)
    loop.call_soon(loop.stop)  # the loop stops before the turn that would write "first"
    loop.run_forever()
    loop.close()
    assert stream.getvalue() == ""
    asyncio.run(log_second())
    assert stream.getvalue() == "first\nsecond\n"


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_direct_event_lines_are_the_lines_records_give(fmt: str) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    events = [
        completed(),
        chunk(),
        _Odd(ts=TS + 0.999, name="n", lineno=7),
        ModelLoaded(model_id="m", provider="stub", role="primary"),
    ]
    written = []
    try:
        for direct in (True, False):
            handler = configure_logging("DEBUG", fmt)
            buf = io.StringIO()
            handler.setStream(buf)
            bus = EventBus()
            log_events(bus, lines=handler if direct else None)
            for event in events:
                bus.emit(event)
            written.append(buf.getvalue())
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert written[0] == written[1]
    assert written[0].count("mia.events") == len(events)  # (a chunk's text holds a newline)


async def test_direct_event_lines_keep_their_place_among_records() -> None:
    import asyncio

    stream = CountingStream()
    handler = LoopBatchedHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.handle(logging.makeLogRecord({"msg": "record", "levelno": logging.INFO}))
    handler.write_line("event", logging.INFO)
    assert stream.getvalue() == ""  # held with the record, for the loop's next turn
    handler.write_line("failure", logging.ERROR)  # at once, after what is held
    assert stream.getvalue() == "record\nevent\nfailure\n"
    await asyncio.sleep(0)
    assert stream.getvalue() == "record\nevent\nfailure\n"
