"""llama.cpp's sampler chain for one generation's parameters (penalties, grammar,
top-k/top-p/min-p, temperature and seed): each sequence samples with a chain of its own."""

from __future__ import annotations

from typing import Any

from pipelines.errors import InvalidRequest
from pipelines.providers.base import DecodeParams
from pipelines.providers.llama.grammar import SCHEMA_PARAM
from pipelines.providers.llama.runtime import runtime

__all__ = ["PENALTY_LAST_N", "build_sampler", "free_sampler"]

PENALTY_LAST_N = 64
"""How many recent tokens repeat/frequency/presence penalties look at (llama-cpp-python's default)."""


def build_sampler(model: Any, params: DecodeParams, gbnf: str | None) -> Any:
    """The sampler chain for `params` (a ctypes pointer; the caller owns it and frees it
    with `free_sampler`). Raises `InvalidRequest` when llama.cpp rejects the grammar."""
    llama_cpp = runtime()
    vocab = llama_cpp.llama_model_get_vocab(model)
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())

    def add(sampler: Any) -> None:
        llama_cpp.llama_sampler_chain_add(chain, sampler)

    if params.repeat_penalty != 1.0 or params.frequency_penalty or params.presence_penalty:
        add(
            llama_cpp.llama_sampler_init_penalties(
                llama_cpp.llama_vocab_n_tokens(vocab),
                PENALTY_LAST_N,
                params.repeat_penalty,
                params.frequency_penalty,
                params.presence_penalty,
            )
        )
    if gbnf is not None:
        grammar = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
        if not grammar:
            llama_cpp.llama_sampler_free(chain)
            raise InvalidRequest("response_format: llama.cpp rejected the derived grammar", param=SCHEMA_PARAM)
        add(grammar)
    if params.temperature <= 0:
        add(llama_cpp.llama_sampler_init_greedy())
    else:
        if params.top_k > 0:
            add(llama_cpp.llama_sampler_init_top_k(params.top_k))
        if params.top_p < 1.0:
            add(llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
        if params.min_p > 0.0:
            add(llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
        add(llama_cpp.llama_sampler_init_temp(params.temperature))
        seed = params.seed if params.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED
        add(llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return chain


def free_sampler(sampler: Any) -> None:
    runtime().llama_sampler_free(sampler)
