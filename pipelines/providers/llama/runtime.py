"""llama-cpp-python, imported in one place, and the ctypes helpers around its C API.

llama_cpp (and numpy, which it brings) are imported when a model first loads, not when
the gateway starts: a gateway without them serves its models from the stub (ADR-0015).
`runtime()` is that one import; every other module of this package calls it.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import os
import threading
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pipelines.harmony.tokens import SPECIAL_TOKENS
from pipelines.providers.base import DecodeParams, LoadFailure
from pipelines.types import LogprobEntry, Piece, TopLogprob

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "GOMP_SPINCOUNT",
    "QuietLog",
    "make_piece",
    "new_context",
    "numpy",
    "prompt_logprob",
    "runtime",
    "token_bytes",
    "token_text",
]

GOMP_SPINCOUNT = "3000"
"""The spin count llama.cpp's OpenMP threads wait with, unless the environment sets one."""


_HARMONY_MARKERS = frozenset(t.encode() for t in SPECIAL_TOKENS)
"""llama.cpp gives gpt-oss's `<|channel|>`, `<|message|>`, `<|start|>`, `<|constrain|>` and
`<|end|>` the user-defined attribute, not the control one: they are special all the same."""

_SUBMODULES = ("llama_cpp._internals", "llama_cpp._logger", "llama_cpp.llama_chat_format", "llama_cpp.llama_grammar")


@functools.lru_cache(maxsize=1)
def runtime() -> ModuleType:
    """The `llama_cpp` module, its submodules loaded; raises ImportError when it is missing."""
    # Read once, when llama.cpp's OpenMP runtime (libgomp) loads with it: how long a
    # thread spins at a barrier before it sleeps. libgomp's default (300,000 spins)
    # collapses decoding when another process wants a core (SmolLM2, 2 threads on 2
    # cores beside one busy process: 5-12 tokens/s, 22-25 with 3,000 spins) while idle
    # decoding is the same within noise; bench/openmp_spin.py, docs/performance.md.
    # A value in the environment wins.
    os.environ.setdefault("GOMP_SPINCOUNT", GOMP_SPINCOUNT)
    module = importlib.import_module("llama_cpp")
    for name in _SUBMODULES:
        importlib.import_module(name)
    return module


@functools.lru_cache(maxsize=1)
def numpy() -> ModuleType:
    """numpy, which llama-cpp-python depends on (imported with it, for logprobs)."""
    runtime()
    return importlib.import_module("numpy")


def new_context(
    model: Any,
    *,
    n_ctx: int,
    n_batch: int,
    n_seq: int,
    threads: int,
    unified: bool,
    embeddings: bool = False,
    flash_attention: bool = False,
) -> Any:
    """A llama.cpp context of `n_ctx` cells for `n_seq` sequences (a ctypes pointer; the
    caller frees it with `llama_free`). Raises `LoadFailure` when llama.cpp cannot make it.

    With `embeddings`, the context pools each sequence into a vector (the pooling the GGUF
    names) and reads a whole batch in one step: a non-causal model must see every token of
    a sequence at once.

    `flash_attention` is off unless a passport asks for it: it decodes 10-20 % faster on
    CPU, but a prompt read partly from a cached prefix then gave logits up to 1.0 apart
    from a fresh read on SmolLM2, and greedy output changed (docs/performance.md)."""
    llama_cpp = runtime()
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = n_ctx
    params.n_batch = n_batch
    params.n_ubatch = n_batch if embeddings else min(n_batch, 512)
    params.embeddings = embeddings
    params.n_seq_max = n_seq
    params.n_threads = threads
    params.n_threads_batch = threads
    params.kv_unified = unified
    params.swa_full = True  # a shorter SWA cache could not serve a cached prefix again
    params.flash_attn_type = (
        llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attention else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    )
    ctx = llama_cpp.llama_init_from_model(model, params)
    if not ctx:
        raise LoadFailure("load_error", f"llama.cpp could not create a context of {n_ctx} tokens")
    return ctx


class _Hook:
    """llama.cpp's process-wide log hook and how many loaded models want it quiet."""

    def __init__(self, callback: Any) -> None:
        self.callback = callback
        self.users = 0
        self.lock = threading.Lock()


@functools.cache
def _quiet_hook() -> _Hook:
    """The do-nothing log callback, made once per process and never freed: llama.cpp keeps
    only a raw pointer to its hook, and a callback owned by a provider that was dropped
    while installed (a failed load, a test's provider never unloaded) was freed under it:
    the next log line of any model load segfaulted the process."""
    llama_cpp = runtime()

    @llama_cpp.llama_log_callback
    def _ignore(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        return None

    return _Hook(_ignore)


class QuietLog:
    """Keeps llama.cpp's log quiet while a model is loaded.

    llama.cpp prints model-loading chatter (and Gemma's SWA notice, and a line per restored
    prompt state) to stderr even with verbose=False. The log hook is process-wide and C
    keeps only a raw pointer, so the callback is one that lives as long as the process
    (`_quiet_hook`); when the last loaded model's `remove` runs, llama-cpp-python's own
    (module-lived) one goes back: one model unloading leaves the others quiet."""

    __slots__ = ("_installed",)

    def __init__(self) -> None:
        self._installed = False

    def install(self) -> None:
        hook = _quiet_hook()
        with hook.lock:
            if not self._installed:
                self._installed = True
                hook.users += 1
            runtime().llama_log_set(hook.callback, ctypes.c_void_p(0))

    def remove(self) -> None:
        hook = _quiet_hook()
        with hook.lock:
            if not self._installed:
                return
            self._installed = False
            hook.users -= 1
            if hook.users == 0:
                llama_cpp = runtime()
                llama_cpp.llama_log_set(llama_cpp._logger.llama_log_callback, ctypes.c_void_p(0))


def token_text(model: Any, token: int) -> str:
    """A token's text as the vocabulary writes it ("" for none, a negative id)."""
    if token < 0:
        return ""
    llama_cpp = runtime()
    vocab = llama_cpp.llama_model_get_vocab(model)
    return bytes(llama_cpp.llama_vocab_get_text(vocab, token)).decode("utf-8", errors="replace")


def token_bytes(vocab: Any, token: int) -> bytes:
    """The token's exact bytes, control tokens written out (no leading-space stripping)."""
    llama_cpp = runtime()
    buf = ctypes.create_string_buffer(64)
    n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, True)
    if n < 0:
        buf = ctypes.create_string_buffer(-n)
        n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, True)
    return buf.raw[:n]


def make_piece(vocab: Any, token: int, ctx: Any, index: int, n_vocab: int, params: DecodeParams) -> Piece:
    """The piece for a token sampled from output `index` of `ctx` (whose logits give the logprobs)."""
    llama_cpp = runtime()
    data = token_bytes(vocab, token)
    logprob = None
    if params.logprobs:
        logits = _logits(llama_cpp.llama_get_logits_ith(ctx, index), n_vocab)
        logprob = _logprob_entry(vocab, logits, token, data, params.top_logprobs)
    special = bool(llama_cpp.llama_vocab_is_control(vocab, token)) or (
        data in _HARMONY_MARKERS
        and bool(llama_cpp.llama_vocab_get_attr(vocab, token) & llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED)
    )
    return Piece(data=data, special=special, logprob=logprob)


def prompt_logprob(vocab: Any, ctx: Any, index: int, n_vocab: int, token: int, top: int) -> LogprobEntry:
    """The logprob of prompt token `token` from output `index` of `ctx` (the logits of the
    position before it), with the `top` most likely tokens there."""
    llama_cpp = runtime()
    logits = _logits(llama_cpp.llama_get_logits_ith(ctx, index), n_vocab)
    return _logprob_entry(vocab, logits, token, token_bytes(vocab, token), top)


def _logits(pointer: Any, n_vocab: int) -> npt.NDArray[np.float32]:
    logits: npt.NDArray[np.float32] = numpy().ctypeslib.as_array(pointer, shape=(n_vocab,))
    return logits


def _logprob_entry(vocab: Any, logits: npt.NDArray[np.float32], token: int, data: bytes, top: int) -> LogprobEntry:
    """Log-softmax of the raw logits (before penalties, grammar and temperature), as OpenAI reports them."""
    xp = numpy()
    peak = float(logits.max())
    log_total = peak + float(xp.log(xp.exp(logits - peak, dtype=xp.float64).sum()))
    top_entries: list[TopLogprob] = []
    if top > 0:
        k = min(top, logits.shape[0])
        best = xp.argpartition(logits, -k)[-k:]
        for candidate in best[xp.argsort(logits[best])[::-1]]:
            candidate_bytes = data if int(candidate) == token else token_bytes(vocab, int(candidate))
            top_entries.append(
                TopLogprob(
                    token=candidate_bytes.decode("utf-8", errors="replace"),
                    logprob=float(logits[candidate]) - log_total,
                    bytes=list(candidate_bytes),
                )
            )
    return LogprobEntry(
        token=data.decode("utf-8", errors="replace"),
        logprob=float(logits[token]) - log_total,
        bytes=list(data),
        top_logprobs=top_entries,
    )
