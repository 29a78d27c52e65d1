"""The Responses wire (`POST /v1/responses`): its request (`request.py`), the objects and
events it answers with (`objects.py`), translation to and from the internal types
(`translate.py`, the tools offered in `tools.py`), the stream encoder (`stream.py`) and the
seal of reasoning that clients keep (`sealing.py`)."""

from __future__ import annotations

from compat.responses_wire.objects import InputTokenCount, ResponseObject, StreamEvent
from compat.responses_wire.request import HOSTED_TOOLS, ResponsesRequest, decode_responses_request
from compat.responses_wire.sealing import ReasoningSeal
from compat.responses_wire.stream import ResponseStreamEncoder
from compat.responses_wire.translate import Translated, new_item_id, to_internal, to_response

__all__ = [
    "HOSTED_TOOLS",
    "InputTokenCount",
    "ReasoningSeal",
    "ResponseObject",
    "ResponseStreamEncoder",
    "ResponsesRequest",
    "StreamEvent",
    "Translated",
    "decode_responses_request",
    "new_item_id",
    "to_internal",
    "to_response",
]
