"""The upstream chat wire, without HTTP: the event stream read back as messages."""

from __future__ import annotations

import json

from pipelines.types import Open, Text
from pipelines.upstream.wire import ChunkReader, SSEDecoder
from tests.support.upstream import chunk


def test_reasoning_sent_under_both_names_is_taken_once() -> None:
    # an upstream mia-gateway with reasoning_fields = "both" does exactly this
    reader = ChunkReader("up")
    assert reader.pieces(json.dumps(chunk(reasoning_content="hmm", reasoning="hmm"))) == [
        Open(channel="analysis"),
        Text("hmm", tokens=1),
    ]


def test_sse_comments_fields_and_multiline_data() -> None:
    sse = SSEDecoder()
    lines = [": keep-alive", "event: message", "id: 7", 'data: {"a":', "data: 1}", "", "data:[DONE]", ""]
    assert [d for d in map(sse.feed, lines) if d is not None] == ['{"a":\n1}', "[DONE]"]
