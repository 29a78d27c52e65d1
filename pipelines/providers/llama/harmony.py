"""gpt-oss on llama.cpp: its vocabulary checked at load.

Harmony prompts are tokenized by `pipelines.harmony.vocab` (llama.cpp's tokenizer reads
special tokens into client text and splits combining marks its own way), which is only right
for a model whose vocabulary is o200k_harmony, id for id: `check_vocabulary` makes sure at load.
"""

from __future__ import annotations

from typing import Any

from pipelines.harmony.vocab import FIRST_SPECIAL, N_VOCAB, SPECIAL_IDS, HarmonyVocab
from pipelines.providers.base import LoadFailure
from pipelines.providers.llama.runtime import runtime, token_bytes

__all__ = ["check_vocabulary"]


def check_vocabulary(model: Any, vocab: HarmonyVocab) -> None:
    """Raises `LoadFailure` unless the model's vocabulary is o200k_harmony, id for id (every
    byte-pair token and the named special tokens): the ids `vocab` computes must mean the
    same to it. About 0.5 s for the 201,088 tokens, on the loading thread."""
    llama_cpp = runtime()
    handle = llama_cpp.llama_model_get_vocab(model)
    size = llama_cpp.llama_vocab_n_tokens(handle)
    if size != N_VOCAB:
        raise LoadFailure("vocab_mismatch", f"a Harmony model needs o200k_harmony ({N_VOCAB} tokens), not {size}")
    for text, token in SPECIAL_IDS.items():
        if token_bytes(handle, token) != text.encode():
            raise LoadFailure("vocab_mismatch", f"token {token} is not {text} as o200k_harmony has it")
    for token in range(FIRST_SPECIAL):
        if token_bytes(handle, token) != vocab.token_bytes(token):
            raise LoadFailure("vocab_mismatch", f"token {token} differs from o200k_harmony's")
