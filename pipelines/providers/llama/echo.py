"""A completion's echo on the engine: the prompt's own logprobs, read from every prompt
position's logits as the prompt is evaluated, and the prompt's tokens as the report that
goes out before the first generated token."""

from __future__ import annotations

from typing import Any

from pipelines.providers.llama.runtime import prompt_logprob, runtime, token_bytes
from pipelines.providers.llama.sequences import Seq
from pipelines.types import PromptToken, Report

__all__ = ["echo_report", "read_prompt_logprobs", "wants_prompt_logprobs"]


def wants_prompt_logprobs(seq: Seq) -> bool:
    """The prompt's own logprobs were asked for (`echo` with `logprobs`): every prompt
    position needs its logits, so none may come from a cached prefix."""
    return seq.plan.params.echo and seq.plan.params.logprobs


def read_prompt_logprobs(seq: Seq, take: int, vocab: Any, ctx: Any, n_vocab: int) -> None:
    """Adds the logprobs of the prompt tokens that follow the `take` positions just decoded
    (from `seq.fed` on, outputs 0..take-1 of `ctx`) to `seq.prompt_logprobs`."""
    prompt, top = seq.plan.tokens, seq.plan.params.top_logprobs
    for n in range(take):
        j = seq.fed + n + 1
        if j < len(prompt):
            seq.prompt_logprobs.append(prompt_logprob(vocab, ctx, n, n_vocab, prompt[j], top))


def echo_report(seq: Seq, vocab: Any) -> Report:
    """The prompt as `seq` read it: each token's bytes, whether it is a control token, and
    its logprob when they were read (none for the first)."""
    llama_cpp = runtime()
    logprobs = seq.prompt_logprobs
    return Report(
        prompt=tuple(
            PromptToken(
                data=token_bytes(vocab, token),
                special=llama_cpp.llama_vocab_is_control(vocab, token),
                logprob=logprobs[i - 1] if 0 < i <= len(logprobs) else None,
            )
            for i, token in enumerate(seq.plan.tokens)
        )
    )
