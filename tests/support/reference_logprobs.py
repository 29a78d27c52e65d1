"""Prompt logprobs computed directly with llama-cpp-python's own `Llama` (all logits kept),
sharing no code with the gateway: the reference for echo logprobs and lm-eval's
log-likelihoods."""

from __future__ import annotations

from pathlib import Path

__all__ = ["plain_prompt_logprobs"]


def plain_prompt_logprobs(path: Path, sequences: list[list[int]]) -> list[list[float]]:
    """For each token sequence, the logprob of every token after the first given the
    tokens before it (a fresh context per sequence, no flash attention, as the engine)."""
    import llama_cpp
    import numpy as np

    llm = llama_cpp.Llama(
        model_path=str(path), n_ctx=2048, n_threads=2, n_batch=512, flash_attn=False, logits_all=True, verbose=False
    )
    try:
        out = []
        for tokens in sequences:
            llm.reset()
            llm.eval(tokens)
            scores = np.asarray(llm.scores[: len(tokens)], dtype=np.float64)
            log_softmax = scores - np.logaddexp.reduce(scores, axis=1, keepdims=True)
            out.append([float(log_softmax[i - 1, tokens[i]]) for i in range(1, len(tokens))])
        return out
    finally:
        llm.close()
