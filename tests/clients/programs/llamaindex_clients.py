"""LlamaIndex's OpenAILike with its defaults: `is_chat_model=False`, so `complete()` calls
the legacy /v1/completions.

Usage: python llamaindex_clients.py MODEL  (OPENAI_BASE_URL, OPENAI_API_KEY set)
"""

from __future__ import annotations

import json
import os
import sys

from llama_index.llms.openai_like import OpenAILike


def main() -> None:
    llm = OpenAILike(
        model=sys.argv[1],
        api_base=os.environ["OPENAI_BASE_URL"],
        api_key=os.environ["OPENAI_API_KEY"],
        max_tokens=16,
        temperature=0,
        max_retries=0,
    )
    completion = llm.complete("The capital of France is")
    streamed = "".join(part.delta or "" for part in llm.stream_complete("The capital of France is"))
    print(json.dumps({"text": completion.text, "streamed": streamed}))


if __name__ == "__main__":
    main()
