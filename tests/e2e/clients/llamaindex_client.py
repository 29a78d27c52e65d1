"""LlamaIndex's `OpenAILike` as its users make it (model, api_base, api_key; its defaults
otherwise), run in LlamaIndex's own virtual environment (scripts/install.sh --test) by
tests/e2e/test_llamaindex.py: `python llamaindex_client.py API_BASE MODEL` prints what it
got as one JSON object."""

from __future__ import annotations

import json
import sys

from llama_index.core.llms import ChatMessage
from llama_index.llms.openai_like import OpenAILike


def main(api_base: str, model: str) -> None:
    llm = OpenAILike(model=model, api_base=api_base, api_key="unused")
    greedy = OpenAILike(model=model, api_base=api_base, api_key="unused", temperature=0)
    reply = llm.chat([ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="Hi")])
    out = {
        "is_chat_model": llm.metadata.is_chat_model,
        "complete": llm.complete("Once upon a time").text,
        "stream_complete": "".join(r.delta or "" for r in llm.stream_complete("Once upon a time")),
        "chat": reply.message.content,
        "greedy": greedy.complete("The capital of France is").text,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
