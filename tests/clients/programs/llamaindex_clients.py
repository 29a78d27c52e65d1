"""LlamaIndex's OpenAILike as its users make it (model, api_base, api_key; its defaults
otherwise: `is_chat_model=False`, so every call is a legacy /v1/completions).

Usage: python llamaindex_clients.py MODEL [TEMPERATURE]  (OPENAI_BASE_URL, OPENAI_API_KEY set)
Prints one JSON line: complete()'s text, stream_complete()'s joined deltas, chat()'s reply.
"""

from __future__ import annotations

import json
import os
import sys

from llama_index.core.llms import ChatMessage
from llama_index.llms.openai_like import OpenAILike


def main() -> None:
    extra = {"temperature": float(sys.argv[2])} if len(sys.argv) > 2 else {}
    llm = OpenAILike(model=sys.argv[1], api_base=os.environ["OPENAI_BASE_URL"], api_key="unused", **extra)
    text = llm.complete("Once upon a time").text
    streamed = "".join(part.delta or "" for part in llm.stream_complete("Once upon a time"))
    reply = llm.chat([ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="Hi")])
    france = llm.complete("The capital of France is").text
    print(
        json.dumps(
            {
                "is_chat_model": llm.metadata.is_chat_model,
                "text": text,
                "streamed": streamed,
                "chat": reply.message.content,
                "france": france,
            }
        )
    )


if __name__ == "__main__":
    main()
