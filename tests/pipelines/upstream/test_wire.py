"""The upstream chat wire, without HTTP: the event stream read back as messages."""

from __future__ import annotations

import json

import pytest

from pipelines.types import Open, Text
from pipelines.upstream import UpstreamFailure
from pipelines.upstream.wire import ChunkReader, SSEDecoder
from tests.support.upstream import chunk


def test_reasoning_sent_under_both_names_is_taken_once() -> None:
    # an upstream mia-gateway with reasoning_fields = "both" does exactly this
    reader = ChunkReader("up")
    assert reader.pieces(json.dumps(chunk(reasoning_content="hmm", reasoning="hmm")).encode()) == [
        Open(channel="analysis"),
        Text("hmm", tokens=1),
    ]


def test_done_is_read_with_or_without_spaces_and_a_bad_event_names_itself() -> None:
    reader = ChunkReader("up")
    assert reader.pieces(b" [DONE] ") == [] and reader.done and reader.finished
    with pytest.raises(UpstreamFailure, match=r"malformed stream event .*'\{oops'"):
        ChunkReader("up").pieces(b"{oops")


def feed_all(parts: list[bytes]) -> list[bytes]:
    sse = SSEDecoder()
    out = [event for part in parts for event in sse.feed(part)]
    last = sse.flush()
    return out + ([last] if last is not None else [])


def test_sse_comments_fields_and_multiline_data() -> None:
    stream = b': keep-alive\n\nevent: message\nid: 7\ndata: {"a":\ndata: 1}\n\ndata:[DONE]\n\n'
    assert feed_all([stream]) == [b'{"a":\n1}', b"[DONE]"]


STREAM = b'data: {"n":1}\n\n: ping\n\ndata: {"n":2}\n\n\ndata: {"n":3}\n\ndata: [DONE]\n\n'
EVENTS = [b'{"n":1}', b'{"n":2}', b'{"n":3}', b"[DONE]"]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_events_come_out_whole_however_the_bytes_are_cut(newline: bytes, size: int) -> None:
    stream = STREAM.replace(b"\n", newline)
    parts = [stream[i : i + size] for i in range(0, len(stream), size)]
    assert feed_all(parts) == EVENTS


def test_a_last_event_without_its_blank_line_is_flushed() -> None:
    sse = SSEDecoder()
    assert sse.feed(b'data: {"n":1}\n\ndata: {"n":2}\r') == [b'{"n":1}']
    assert sse.flush() == b'{"n":2}'
    assert sse.flush() is None


def test_an_event_without_data_is_none() -> None:
    assert feed_all([b"event: ping\nid: 3\n\nretry: 10\n\ndata\n\n"]) == [b""]


def test_one_event_per_read_as_upstreams_send_them() -> None:
    reads = [b'data: {"n":1}\n\n', b'data: {"n":2}\r\n\r\n', b"data: a\rb\n\n", b"data: [DONE]\n\n"]
    assert feed_all(reads) == [b'{"n":1}', b'{"n":2}', b"a", b"[DONE]"]
