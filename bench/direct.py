"""llama-cpp-python called directly, in a process of its own: the single-stream ceiling
that bench/compare.py measures the servers against.

    python bench/direct.py SPEC_JSON     # prints one JSON object: {clients: summary}

N clients are served one request after another (what one context can do); their time to
first token counts the wait for the requests ahead, as N clients of a serial server would
see it.
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from typing import Any

from llama_cpp import Llama
from stats import Request, summarise
from workload import prompt_for, rounds_for

__all__ = ["main"]


def main(spec: dict[str, Any]) -> dict[str, Any]:
    llm = Llama(
        model_path=spec["path"],
        n_ctx=2048,
        n_threads=spec["threads"],
        n_threads_batch=spec["threads"],
        n_batch=512,
        flash_attn=False,  # as the gateway's llama.cpp provider
        verbose=False,
    )
    kind, max_tokens = spec["kind"], spec["max_tokens"]

    def run(text: str, req: Request) -> None:
        if kind == "chat":
            chunks = llm.create_chat_completion(
                messages=[{"role": "user", "content": text}],
                max_tokens=max_tokens,
                temperature=0.0,
                repeat_penalty=1.0,
                stream=True,
            )
            for chunk in chunks:
                choice = chunk["choices"][0]  # type: ignore[index]
                if choice["delta"].get("content"):
                    req.stamps.append(time.perf_counter())
                req.finish = choice.get("finish_reason") or req.finish
        else:
            for chunk in llm.create_completion(
                prompt=text, max_tokens=max_tokens, temperature=0.0, repeat_penalty=1.0, stream=True
            ):
                choice = chunk["choices"][0]  # type: ignore[index]
                if choice["text"]:
                    req.stamps.append(time.perf_counter())
                req.finish = choice.get("finish_reason") or req.finish

    run(prompt_for(kind, 0, 0, 1), Request(sent=time.perf_counter()))  # warm-up
    out: dict[str, Any] = {}
    for n in spec["clients"]:
        # N closed-loop clients of a serial server, first come first served: a client's
        # next request arrives when its previous one ends.
        start = time.perf_counter()
        queue: deque[tuple[int, int, float]] = deque((i, 0, start) for i in range(n))
        requests: list[Request] = []
        while queue:
            client, round_, arrived = queue.popleft()
            req = Request(sent=arrived)
            try:
                run(prompt_for(kind, client, round_, n), req)
            except Exception as exc:
                req.error = f"{type(exc).__name__}: {exc}"
            requests.append(req)
            if round_ + 1 < rounds_for(n, spec["rounds"]):
                queue.append((client, round_ + 1, time.perf_counter()))
        out[str(n)] = summarise(requests, time.perf_counter() - start)
    return out


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
