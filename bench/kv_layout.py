"""llama.cpp's batched decode under each KV layout and batch order, without the gateway.

    .venv/bin/python bench/kv_layout.py [--sequences 4] [--prompt 32] [--steps 64] [--threads 2] [--rounds 3]

N sequences each read a `--prompt`-token prompt, then decode `--steps` tokens together, one
`llama_decode` per step, as the gateway's engine does. Three layouts, alternating in
rounds: separate KV streams with the batch in sequence-id order ("streams, in order"),
separate streams with the batch in another order ("streams, shuffled": llama.cpp then
splits the step into several passes, since a pass takes only consecutive increasing ids),
and one unified KV buffer ("unified", any order: every sequence's attention then spans
the cells of all, which long prompts make visible). Prints ms per step and tokens/s.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import llama_cpp
from models import model_file

__all__ = ["main"]

_LAYOUTS = ("streams, in order", "streams, shuffled", "unified, shuffled")


def _context(model: Any, n: int, threads: int, unified: bool) -> Any:
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = 2048 * n
    params.n_batch = 512
    params.n_ubatch = 512
    params.n_seq_max = n
    params.n_threads = params.n_threads_batch = threads
    params.kv_unified = unified
    params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED  # as the gateway
    return llama_cpp.llama_init_from_model(model, params)


def _run(model: Any, layout: str, n: int, prompt: int, steps: int, threads: int) -> float:
    """Seconds per decode step of `n` sequences."""
    ctx = _context(model, n, threads, unified=layout.startswith("unified"))
    batch = llama_cpp.llama_batch_init(512, 0, 1)
    order = list(range(n)) if layout.endswith("in order") else [i for j in (1, 0) for i in range(j, n, 2)]

    def put(k: int, token: int, pos: int, seq: int, logits: bool) -> None:
        batch.token[k], batch.pos[k], batch.n_seq_id[k] = token, pos, 1
        batch.seq_id[k][0], batch.logits[k] = seq, logits

    try:
        for seq in range(n):  # the prompts, one call per sequence and 512 tokens (as the engine reads them)
            for first in range(0, prompt, 512):
                size = min(512, prompt - first)
                for k in range(size):
                    put(k, 100 + (first + k + seq) % 1000, first + k, seq, first + k == prompt - 1)
                batch.n_tokens = size
                assert llama_cpp.llama_decode(ctx, batch) == 0
        start = time.perf_counter()
        for step in range(steps):
            for k, seq in enumerate(order):
                put(k, 200 + step, prompt + step, seq, True)
            batch.n_tokens = n
            assert llama_cpp.llama_decode(ctx, batch) == 0
        return (time.perf_counter() - start) / steps
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sequences", type=int, default=4)
    p.add_argument("--prompt", type=int, default=32, help="prompt tokens per sequence (at most 1900)")
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    model = llama_cpp.llama_model_load_from_file(str(model_file("smollm2")).encode(), params)
    per_step: dict[str, list[float]] = {layout: [] for layout in _LAYOUTS}
    for round_ in range(args.rounds):
        shift = round_ % len(_LAYOUTS)
        for layout in _LAYOUTS[shift:] + _LAYOUTS[:shift]:
            per_step[layout].append(
                _run(model, layout, args.sequences, min(args.prompt, 1900), args.steps, args.threads)
            )
    print(f"{args.sequences} sequences, {args.prompt}-token prompts, {args.steps} steps, {args.threads} threads")
    for layout, times in per_step.items():
        best = min(times)
        spread = ", ".join(f"{t * 1000:.1f}" for t in times)
        print(f"{layout:20s} best {best * 1000:6.1f} ms/step {args.sequences / best:7.1f} tokens/s  (rounds: {spread})")
    llama_cpp.llama_model_free(model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
