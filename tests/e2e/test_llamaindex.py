"""LlamaIndex's `OpenAILike` as its users make it (model, api_base, api_key: its defaults
otherwise), which speaks legacy completions: `complete`, `stream_complete`, and `chat`
turned into a completion prompt, against served gateways. LlamaIndex runs in its own
environment (.clients/llamaindex: it pins openai<3), as a program of tests/clients."""

from __future__ import annotations

import pytest

from tests.support.clients import run_client
from tests.support.logs import events
from tests.support.served import ServedGateway

pytestmark = pytest.mark.slow


def _completions(gw: ServedGateway) -> int:
    return len([e for e in events(gw.log(), "RequestFinished") if e["endpoint"] == "/v1/completions"])


def test_complete_stream_and_chat_go_through_completions(stub_gateway: ServedGateway) -> None:
    before = _completions(stub_gateway)
    out = run_client("llamaindex", "llamaindex_clients.py", "stub-chat", api_url=stub_gateway.api_url)
    assert out["is_chat_model"] is False  # the default: completions
    assert out["text"] and len(out["text"].split()) == 16  # OpenAI's default max_tokens for completions
    assert out["streamed"] == out["text"]
    assert out["chat"]
    assert _completions(stub_gateway) - before == 4


def test_a_real_model_completes(default_gateway: ServedGateway) -> None:
    out = run_client(
        "llamaindex", "llamaindex_clients.py", "smollm2-135m-instruct", "0", api_url=default_gateway.api_url
    )
    assert "Paris" in out["france"]
