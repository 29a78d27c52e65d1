"""LlamaIndex's `OpenAILike` as its users make it (model, api_base, api_key: its defaults
otherwise), which speaks legacy completions: `complete`, `stream_complete`, and `chat`
turned into a completion prompt, against served gateways."""

from __future__ import annotations

import pytest
from llama_index.core.llms import ChatMessage
from llama_index.llms.openai_like import OpenAILike

from tests.support.logs import events
from tests.support.served import ServedGateway

pytestmark = pytest.mark.slow


def _llm(gw: ServedGateway, model: str) -> OpenAILike:
    return OpenAILike(model=model, api_base=gw.api_url, api_key="unused")


def _completions(gw: ServedGateway) -> int:
    return len([e for e in events(gw.log(), "RequestFinished") if e["endpoint"] == "/v1/completions"])


def test_complete_stream_and_chat_go_through_completions(stub_gateway: ServedGateway) -> None:
    llm = _llm(stub_gateway, "stub-chat")
    assert not llm.metadata.is_chat_model  # the default: completions
    before = _completions(stub_gateway)
    text = llm.complete("Once upon a time").text
    assert text and len(text.split()) == 16  # OpenAI's default max_tokens for completions
    assert "".join(r.delta or "" for r in llm.stream_complete("Once upon a time")) == text
    reply = llm.chat([ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="Hi")])
    assert reply.message.content
    assert _completions(stub_gateway) - before == 3


def test_a_real_model_completes(default_gateway: ServedGateway) -> None:
    llm = OpenAILike(model="smollm2-135m-instruct", api_base=default_gateway.api_url, api_key="unused", temperature=0)
    text = llm.complete("The capital of France is").text
    assert "Paris" in text
