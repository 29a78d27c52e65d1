"""A local GGUF model through llama-cpp-python, one token per piece.

llama.cpp calls block for milliseconds per token, so decoding runs on a worker thread
and each token crosses to the event loop as soon as it is sampled. Sampling uses
llama.cpp's sampler chain directly (rather than `Llama.generate`) so that the grammar
is checked before any decode work, the context is cleared before every generation,
and logprobs can be read from the logits of the sampled position.

`LlamaCppProvider` decodes one generation at a time (`slots = 1`). What it shares with
the batched provider (`llama_batch.py`, `slots > 1`) lives here too: `LlamaProviderBase`
(model file, chat template, tokenization, the checks before decoding) and the sampler
chain and piece helpers.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import ctypes
import io
import json
import os
import re
import secrets
import threading
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from pipelines.errors import ContextLengthExceeded, GenerationFailed, InvalidRequest, ModelUnavailable
from pipelines.model_files import ChecksumCache, missing_model_file, resolve_model_path
from pipelines.providers.base import CancelToken, DecodeParams, LoadFailure, Prompt, Provider
from pipelines.types import LogprobEntry, Message, Piece, ResponseFormat, TopLogprob

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    from llama_cpp.llama_grammar import LlamaGrammar

    from pipelines.config import LlamaModelConfig

__all__ = [
    "DONE",
    "FLASH_ATTENTION",
    "GOMP_SPINCOUNT",
    "Done",
    "LlamaCppProvider",
    "LlamaProviderBase",
    "Plan",
    "Tokenizer",
    "build_sampler",
    "free_sampler",
    "grammar_for",
    "make_piece",
]

GOMP_SPINCOUNT = "3000"
"""The spin count llama.cpp's OpenMP threads wait with, unless the environment sets one."""

_SCHEMA_PARAM = "response_format.json_schema.schema"
FLASH_ATTENTION = False
"""Flash attention decodes 10-20% faster on this CPU, but its numerics depend on how a
prompt was split between decode calls: a prompt read partly from a cached prefix then gave
logits up to 1.0 apart from a fresh read on SmolLM2, and greedy output changed (docs/performance.md).
Without it, cached prefixes, chunked prompts and batched sequences all reproduce a fresh
single-sequence run exactly on SmolLM2. Both providers must agree on it."""
_PENALTY_LAST_N = 64
"""How many recent tokens repeat/frequency/presence penalties look at (llama-cpp-python's default)."""

# Keywords the JSON-schema-to-grammar converter ignores or cannot express: output would
# not be guaranteed to validate, so such schemas are refused instead of silently loosened.
_UNSUPPORTED_KEYWORDS = (
    "not",
    "if",
    "then",
    "else",
    "patternProperties",
    "propertyNames",
    "dependentSchemas",
    "dependentRequired",
    "dependencies",
    "contains",
    "minContains",
    "maxContains",
    "uniqueItems",
    "unevaluatedProperties",
    "unevaluatedItems",
    "minProperties",
    "maxProperties",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
)
_SCHEMA_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
_STRING_FORMATS = frozenset({"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"})


def grammar_for(response_format: ResponseFormat) -> LlamaGrammar | None:
    """The grammar that constrains output to `response_format` (None for plain text).

    Raises `InvalidRequest` naming the construct when a JSON schema cannot be enforced.
    """
    gbnf = _gbnf_for(response_format)
    if gbnf is None:
        return None
    from llama_cpp.llama_grammar import LlamaGrammar

    return LlamaGrammar.from_string(gbnf, verbose=False)


def _gbnf_for(response_format: ResponseFormat) -> str | None:
    from llama_cpp import llama_grammar

    if response_format.type == "json_object":
        return str(llama_grammar.JSON_GBNF)
    if response_format.type != "json_schema":
        return None
    schema = response_format.schema
    if schema is None:
        raise InvalidRequest("response_format json_schema needs a schema", param=_SCHEMA_PARAM)
    problem = _unsupported_construct(schema, "#")
    if problem is not None:
        raise InvalidRequest(f"response_format: JSON schema not supported: {problem}", param=_SCHEMA_PARAM)
    try:
        return str(llama_grammar.json_schema_to_gbnf(json.dumps(schema)))
    except Exception as exc:  # the converter reports with asserts and ValueErrors alike
        raise InvalidRequest(
            f"response_format: JSON schema not supported: {type(exc).__name__}: {exc}", param=_SCHEMA_PARAM
        ) from None


def _unsupported_construct(schema: object, where: str) -> str | None:
    """The first construct in `schema` the grammar converter cannot enforce, described."""
    if isinstance(schema, bool):
        return None
    if not isinstance(schema, dict):
        return f"{where} is not a schema object"
    for keyword in _UNSUPPORTED_KEYWORDS:
        if keyword in schema:
            return f"keyword {keyword!r} at {where}"
    types = schema.get("type")
    for type_name in types if isinstance(types, list) else [types]:
        if type_name is not None and type_name not in _SCHEMA_TYPES:
            return f"type {type_name!r} at {where}"
    fmt = schema.get("format")
    if fmt is not None and fmt not in _STRING_FORMATS:
        return f"format {fmt!r} at {where}"
    ref = schema.get("$ref")
    if ref is not None and not (isinstance(ref, str) and ref.startswith("#/")):
        return f"non-local $ref {ref!r} at {where}"
    pattern = schema.get("pattern")
    if pattern is not None and not (isinstance(pattern, str) and pattern.startswith("^") and pattern.endswith("$")):
        return f"pattern {pattern!r} at {where} (patterns must be anchored with ^ and $)"
    for sub_where, sub in _subschemas(schema, where):
        problem = _unsupported_construct(sub, sub_where)
        if problem is not None:
            return problem
    return None


def _subschemas(schema: dict[str, Any], where: str) -> list[tuple[str, object]]:
    found: list[tuple[str, object]] = []
    for keyword in ("properties", "$defs", "definitions"):
        members = schema.get(keyword)
        if isinstance(members, dict):
            found.extend((f"{where}/{keyword}/{name}", sub) for name, sub in members.items())
    for keyword in ("anyOf", "oneOf", "allOf", "prefixItems"):
        members = schema.get(keyword)
        if isinstance(members, list):
            found.extend((f"{where}/{keyword}/{i}", sub) for i, sub in enumerate(members))
    items = schema.get("items")
    if isinstance(items, list):
        found.extend((f"{where}/items/{i}", sub) for i, sub in enumerate(items))
    elif items is not None:
        found.append((f"{where}/items", items))
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict):
        found.append((f"{where}/additionalProperties", additional))
    return found


class Done:
    """End of a generation, sent through the queue after the last piece."""


DONE = Done()
_QueueItem = Piece | Done | BaseException


class Plan(msgspec.Struct, kw_only=True):
    """One generation, prepared (and validated) before the model lock is taken."""

    tokens: list[int]
    max_new: int
    gbnf: str | None
    params: DecodeParams


class Tokenizer(Protocol):
    """What prompt rendering needs of a loaded model: `Llama` and llama-cpp-python's
    internal `LlamaModel` both have it."""

    def tokenize(self, text: bytes, add_bos: bool, special: bool) -> list[int]: ...

    def token_bos(self) -> int: ...

    @property
    def model(self) -> Any: ...


class LlamaProviderBase(Provider):
    """What the single-sequence and the batched llama.cpp providers share: finding and
    verifying the GGUF, quieting llama.cpp's log, the chat template, tokenization and
    the checks a prompt passes before any decode work."""

    kind = "llama_cpp"
    config: LlamaModelConfig

    def __init__(self, config: LlamaModelConfig, *, cache_dir: Path) -> None:
        super().__init__(config)
        self.cache_dir = cache_dir
        self.model_path: Path | None = None
        self._formatter: Jinja2ChatFormatter | None = None
        self._log_callback: Any = None
        self._last_prompt: tuple[Tokenizer, Prompt, list[int]] | None = None
        self._specials: re.Pattern[str] | None = None
        """The loaded model's special tokens (see `special_token_pattern`)."""

    @property
    def capabilities(self) -> dict[str, bool]:
        return {**super().capabilities, "json_schema": True, "logprobs": True}

    @property
    def threads(self) -> int:
        return self.config.threads or os.cpu_count() or 1

    def foreseen_failure(self) -> LoadFailure | None:
        return missing_model_file(self.config, cache_dir=self.cache_dir)

    def _model_file(self) -> Path:
        """The verified GGUF (on a worker thread: hashing takes seconds); quiets llama.cpp's log."""
        # Read once, when llama.cpp's OpenMP runtime (libgomp) loads with it: how long a
        # thread spins at a barrier before it sleeps. libgomp's default (300,000 spins)
        # collapses decoding when another process wants a core (SmolLM2, 2 threads on 2
        # cores beside one busy process: 5-12 tokens/s, 22-25 with 3,000 spins) while idle
        # decoding is the same within noise; bench/openmp_spin.py, docs/performance.md.
        # A value in the environment wins.
        os.environ.setdefault("GOMP_SPINCOUNT", GOMP_SPINCOUNT)
        try:
            import llama_cpp
        except ImportError as exc:
            raise LoadFailure("import_error", f"llama_cpp: {exc}") from exc
        self._silence_llama_log(llama_cpp)
        path = resolve_model_path(self.config, cache_dir=self.cache_dir)
        if self.config.sha256 and self.config.verify_checksum:
            ChecksumCache(self.cache_dir).verify(path, self.config.sha256)
        return path

    def _silence_llama_log(self, llama_cpp: Any) -> None:
        # llama.cpp prints model-loading chatter (and Gemma's SWA notice) to stderr even
        # with verbose=False. The log hook is process-wide and C keeps only a raw
        # pointer, so the callback must stay referenced while it is installed: it lives
        # on this instance, and `unload` puts llama-cpp-python's own (module-lived) one back.
        @llama_cpp.llama_log_callback
        def _ignore(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            return None

        self._log_callback = _ignore
        llama_cpp.llama_log_set(_ignore, ctypes.c_void_p(0))

    def _restore_llama_log(self) -> None:
        if self._log_callback is None:
            return
        from llama_cpp import _logger, llama_log_set

        llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
        self._log_callback = None

    def _read_vocab(self, metadata: dict[str, str], model: Any) -> None:
        """The chat template and the special tokens of a model just loaded: on the loading
        thread, since reading every token's attributes takes ~15 ms."""
        self._formatter = self._chat_formatter(metadata, model)
        self._specials = special_token_pattern(model)

    def _forget_vocab(self) -> None:
        self._formatter = None
        self._specials = None
        self._last_prompt = None

    @staticmethod
    def _chat_formatter(metadata: dict[str, str], model: Any) -> Jinja2ChatFormatter | None:
        """The model's own chat template (None for base models without one)."""
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = metadata.get("tokenizer.chat_template")
        if not template:
            return None
        vocab = llama_cpp.llama_model_get_vocab(model)
        return Jinja2ChatFormatter(
            template=template,
            eos_token=_token_text(model, llama_cpp.llama_vocab_eos(vocab)),
            bos_token=_token_text(model, llama_cpp.llama_vocab_bos(vocab)),
            add_generation_prompt=True,
        )

    @abc.abstractmethod
    def _tokenizer(self) -> Tokenizer:
        """The loaded model's tokenizer; raises `ModelUnavailable` when not loaded."""

    def count_tokens(self, prompt: Prompt) -> int:
        """Prompt tokens exactly as `generate` will feed them; needs the model loaded."""
        return len(self._prompt_tokens(self._tokenizer(), prompt))

    def _prompt_tokens(self, tok: Tokenizer, prompt: Prompt) -> list[int]:
        # The pipeline counts a prompt right before generating it: remember the last one
        # so a long template render and tokenization happen once per request.
        memo = self._last_prompt
        if memo is not None and memo[0] is tok and (memo[1] is prompt or memo[1] == prompt):
            return memo[2]
        tokens = self._tokenize(tok, prompt)
        self._last_prompt = (tok, prompt, tokens)
        return tokens

    def _tokenize(self, tok: Tokenizer, prompt: Prompt) -> list[int]:
        if prompt.text is not None:
            # Harmony text writes its control tokens literally; `add_bos` defers to the
            # model's own add_bos flag.
            tokens = tokenize_spans(tok, prompt.text, prompt.plain, self._specials, add_bos=True)
        elif self._formatter is not None:
            text, plain = self._render_template(prompt.messages)
            # The template writes BOS itself where the model wants one.
            tokens = tokenize_spans(tok, text, plain, self._specials, add_bos=False)
        else:
            # No chat template (base models such as Gemma 3 270M): there is no right
            # format, so the turns' texts are joined by newlines for the model to continue.
            # Client text is not parsed for special tokens here: it cannot forge any.
            text = "\n".join(m.content for m in prompt.messages if m.content)
            tokens = tok.tokenize(text.encode(), add_bos=True, special=False)
        bos = tok.token_bos()
        if len(tokens) >= 2 and tokens[0] == bos and tokens[1] == bos:
            tokens = tokens[1:]
        return tokens

    def _render_template(self, messages: tuple[Message, ...]) -> tuple[str, tuple[tuple[int, int], ...]]:
        """The chat template's text for `messages`, and the spans of their contents in it.

        The template is rendered with an unguessable marker in place of each content, so
        the contents can be found again (and read as plain text: a client's `<|im_end|>`
        stays text). A template that changes contents (trims them, say) is caught by
        comparing with a normal render; its text is then read as a whole, as before."""
        assert self._formatter is not None
        nonce = secrets.token_hex(8)
        contents = [m.content for m in messages]
        marked: list[Any] = [
            {**_template_message(m), "content": f"\x00{nonce}.{i}\x00" if m.content else ""}
            for i, m in enumerate(messages)
        ]
        try:
            template_text = self._formatter(messages=marked).prompt
            unmarked: list[Any] = [_template_message(m) for m in messages]
            expected = self._formatter(messages=unmarked).prompt
        except Exception as exc:  # templates reject shapes with raise_exception (or fail to render)
            raise InvalidRequest(f"the model's chat template rejected the messages: {exc}", param="messages") from None
        parts: list[str] = []
        spans: list[tuple[int, int]] = []
        at = length = 0
        for mark in re.finditer(f"\x00{nonce}\\.(\\d+)\x00", template_text):
            head = template_text[at : mark.start()]
            content = contents[int(mark.group(1))]
            parts += [head, content]
            length += len(head)
            spans.append((length, length + len(content)))
            length += len(content)
            at = mark.end()
        parts.append(template_text[at:])
        text = "".join(parts)
        if text != expected:
            return expected, ()
        return text, tuple(spans)

    def _plan(self, tok: Tokenizer, prompt: Prompt, params: DecodeParams, n_ctx: int) -> Plan:
        """Grammar, tokens and context checks: everything that can fail before decode work.

        `n_ctx` is the context one generation has (a batched model's per-sequence share)."""
        gbnf = _gbnf_for(params.response_format)
        tokens = self._prompt_tokens(tok, prompt)
        if not tokens:
            raise InvalidRequest("the prompt is empty", param="messages")
        if len(tokens) + 1 > n_ctx:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {n_ctx} tokens; the prompt has {len(tokens)} tokens.",
                param="messages",
            )
        # Clamp so prompt + output never overflow the context: the cap ends the output.
        return Plan(tokens=tokens, max_new=min(params.max_tokens, n_ctx - len(tokens)), gbnf=gbnf, params=params)


class LlamaCppProvider(LlamaProviderBase):
    """Serves one GGUF file; one generation at a time per loaded model."""

    def __init__(self, config: LlamaModelConfig, *, cache_dir: Path) -> None:
        super().__init__(config, cache_dir=cache_dir)
        self._llm: Llama | None = None
        self._executor: ThreadPoolExecutor | None = None
        # Held from the start of a generation until its decode thread has finished, so
        # two generations never touch one llama context at once.
        self._lock = asyncio.Lock()
        self._active_stop: threading.Event | None = None

    @property
    def busy(self) -> bool:
        """A generation holds the model (its decode thread may still be finishing)."""
        return self._lock.locked()

    @property
    def max_choices(self) -> int:
        # One context, one sequence: several choices would queue behind each other and
        # evaluate the prompt again each time. `slots > 1` selects the batched provider.
        return 1

    @property
    def context_length(self) -> int:
        return self._llm.n_ctx() if self._llm is not None else self.config.context_length

    async def load(self) -> None:
        if self._llm is not None:
            return
        self.status = "loading"
        try:
            self._llm = await asyncio.to_thread(self._load_blocking)
        except BaseException:
            self.status = "unloaded"
            raise
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llama-{self.config.id}")
        self.status = "loaded"

    def _load_blocking(self) -> Llama:
        path = self._model_file()
        import llama_cpp
        from llama_cpp import _logger

        threads = self.threads
        try:
            # verbose=False would point the process's stdout and stderr (the file
            # descriptors) at /dev/null while the model loads, losing every log line any
            # thread writes meanwhile. llama.cpp's own log is silenced by the hook above;
            # what llama-cpp-python prints itself (system info, metadata) is only Python's.
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                llm = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=self.config.context_length,
                    n_threads=threads,
                    # llama-cpp-python would evaluate prompts on every core whatever `threads` says.
                    n_threads_batch=threads,
                    n_batch=self.config.batch_size,
                    flash_attn=FLASH_ATTENTION,
                    verbose=True,
                    logits_all=False,
                )
            # verbose=True also turned llama-cpp-python's own log hook (put back at unload) up
            _logger.set_verbose(False)
        except Exception as exc:
            raise LoadFailure("load_error", f"{type(exc).__name__}: {exc}") from exc
        self._read_vocab(llm.metadata, llm.model)
        self.model_path = path
        return llm

    async def unload(self) -> None:
        llm = self._llm
        if llm is None:
            self.status = "unloaded"
            return
        if self._active_stop is not None:
            self._active_stop.set()  # cut off a running generation rather than wait it out
        async with self._lock:
            self._llm = None
            self._forget_vocab()
            await asyncio.to_thread(llm.close)
            if self._executor is not None:
                self._executor.shutdown(wait=False)
                self._executor = None
            self._restore_llama_log()
        self.status = "unloaded"

    def _tokenizer(self) -> Tokenizer:
        return self._loaded()

    def _loaded(self) -> Llama:
        if self._llm is None:
            raise ModelUnavailable(f"model {self.config.id!r} is not loaded")
        return self._llm

    async def generate(self, prompt: Prompt, params: DecodeParams, cancel: CancelToken) -> AsyncGenerator[Piece, None]:
        llm = self._loaded()
        # Validation (grammar, tokens, context size) before waiting for the model, so a
        # bad request fails at once even while another generation runs. It runs on the
        # loop, not a thread: `unload` cannot free the model in the middle of it.
        plan = self._plan(llm, prompt, params, llm.n_ctx())
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[_QueueItem] = asyncio.Queue()
        stop = threading.Event()

        def emit(item: _QueueItem) -> bool:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                return False
            return True

        await self._lock.acquire()
        try:
            if self._llm is not llm or self._executor is None:
                raise ModelUnavailable(f"model {self.config.id!r} was unloaded")
            sampler = build_sampler(llm.model, plan)
        except BaseException:
            self._lock.release()
            raise
        try:
            future = loop.run_in_executor(self._executor, self._decode, llm, plan, sampler, cancel, stop, emit)
        except BaseException:
            free_sampler(sampler)
            self._lock.release()
            raise
        self._active_stop = stop
        future.add_done_callback(lambda _: self._release(stop))
        try:
            while True:
                item = await queue.get()
                if isinstance(item, Done) or cancel.cancelled:
                    return  # pieces still queued after a cancel are nobody's business
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            if not future.done():
                # Wait for the thread to notice (within one token) so the next request
                # finds the model free. `wait` never cancels the future: if this wait is
                # cancelled in turn, the future's callback releases the lock later.
                await asyncio.wait({future})
            self._release(stop)

    def _release(self, stop: threading.Event) -> None:
        """Free the model after the generation `stop` belongs to; a no-op the second time."""
        if self._active_stop is stop:
            self._active_stop = None
            self._lock.release()

    def _decode(
        self,
        llm: Llama,
        plan: Plan,
        sampler: Any,
        cancel: CancelToken,
        stop: threading.Event,
        emit: Callable[[_QueueItem], bool],
    ) -> None:
        """The decode loop, on the worker thread: checks for cancellation before every token."""
        import llama_cpp

        cut_off = False  # stopped by `stop` (consumer gone, or unload) rather than by the model
        try:
            vocab = llama_cpp.llama_model_get_vocab(llm.model)
            n_vocab = llm.n_vocab()
            params = plan.params
            # A fresh context every time: reusing a cached prefix changes greedy numerics.
            llm.reset()
            memory = llama_cpp.llama_get_memory(llm.ctx)
            if memory is not None:
                llama_cpp.llama_memory_clear(memory, False)
            for start in range(0, len(plan.tokens), llm.n_batch):
                if cancel.cancelled or stop.is_set():
                    cut_off = not cancel.cancelled
                    break
                llm.eval(plan.tokens[start : start + llm.n_batch])
            else:
                for produced in range(1, plan.max_new + 1):
                    if cancel.cancelled or stop.is_set():
                        cut_off = not cancel.cancelled
                        break
                    token = llama_cpp.llama_sampler_sample(sampler, llm.ctx, -1)
                    if llama_cpp.llama_vocab_is_eog(vocab, token):
                        break
                    piece = make_piece(vocab, token, llm.ctx, -1, n_vocab, params)
                    if not emit(piece):
                        return
                    if produced < plan.max_new:  # the last token's successor is never needed
                        llm.eval([token])
        except Exception as exc:
            emit(GenerationFailed(f"llama.cpp decode failed: {type(exc).__name__}: {exc}"))
            return
        finally:
            free_sampler(sampler)
        emit(GenerationFailed("the generation was cut off (model unloading)") if cut_off else DONE)


def make_piece(vocab: Any, token: int, ctx: Any, index: int, n_vocab: int, params: DecodeParams) -> Piece:
    """The piece for a token sampled from output `index` of `ctx` (whose logits give the logprobs)."""
    import llama_cpp

    data = _token_bytes(vocab, token)
    logprob = None
    if params.logprobs:
        logits = _logits(llama_cpp.llama_get_logits_ith(ctx, index), n_vocab)
        logprob = _logprob_entry(vocab, logits, token, data, params.top_logprobs)
    return Piece(data=data, special=llama_cpp.llama_vocab_is_control(vocab, token), logprob=logprob)


def build_sampler(model: Any, plan: Plan) -> Any:
    """llama.cpp's sampler chain for `plan` (a ctypes pointer; the caller owns and frees it)."""
    import llama_cpp

    params = plan.params
    vocab = llama_cpp.llama_model_get_vocab(model)
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())

    def add(sampler: Any) -> None:
        llama_cpp.llama_sampler_chain_add(chain, sampler)

    if params.repeat_penalty != 1.0 or params.frequency_penalty or params.presence_penalty:
        add(
            llama_cpp.llama_sampler_init_penalties(
                llama_cpp.llama_vocab_n_tokens(vocab),
                _PENALTY_LAST_N,
                params.repeat_penalty,
                params.frequency_penalty,
                params.presence_penalty,
            )
        )
    if plan.gbnf is not None:
        grammar = llama_cpp.llama_sampler_init_grammar(vocab, plan.gbnf.encode(), b"root")
        if not grammar:
            llama_cpp.llama_sampler_free(chain)
            raise InvalidRequest("response_format: llama.cpp rejected the derived grammar", param=_SCHEMA_PARAM)
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
    import llama_cpp

    llama_cpp.llama_sampler_free(sampler)


def special_token_pattern(model: Any) -> re.Pattern[str] | None:
    """What llama.cpp parses as special tokens when asked to: control, user-defined and
    unknown tokens, longest first (as its tokenizer tries them)."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(model)
    wanted = (
        llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
        | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
        | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
    )
    texts = set()
    for token in range(llama_cpp.llama_vocab_n_tokens(vocab)):
        if llama_cpp.llama_vocab_get_attr(vocab, token) & wanted:
            text = llama_cpp.llama_vocab_get_text(vocab, token)
            if text:
                texts.add(text.decode("utf-8", errors="replace"))
    if not texts:
        return None
    return re.compile("|".join(re.escape(t) for t in sorted(texts, key=len, reverse=True)))


def tokenize_spans(
    tok: Tokenizer,
    text: str,
    plain: tuple[tuple[int, int], ...],
    specials: re.Pattern[str] | None,
    *,
    add_bos: bool,
) -> list[int]:
    """Tokens of `text`, where special tokens count only outside the `plain` spans.

    This is llama.cpp's own partition (special tokens cut out, the text between them read
    as plain text) with the cuts taken from the template's parts only: for a text whose
    messages hold no special token, the same tokens as reading it whole; a `<|im_end|>`
    typed into a message stays text."""
    if not plain or specials is None:
        return tok.tokenize(text.encode(), add_bos=add_bos, special=True)
    cuts: list[tuple[int, int]] = []
    at = 0
    for start, end in [*sorted(plain), (len(text), len(text))]:
        cuts += [m.span() for m in specials.finditer(text, at, max(at, start))]
        at = max(at, end)
    tokens = tok.tokenize(b"", add_bos=True, special=True) if add_bos else []
    at = 0
    for start, end in cuts:
        if start > at:
            tokens += tok.tokenize(text[at:start].encode(), add_bos=False, special=False)
        tokens += tok.tokenize(text[start:end].encode(), add_bos=False, special=True)
        at = end
    if at < len(text):
        tokens += tok.tokenize(text[at:].encode(), add_bos=False, special=False)
    return tokens


def _template_message(message: Message) -> dict[str, str]:
    return {"role": "system" if message.role == "developer" else message.role, "content": message.content}


def _token_text(model: Any, token: int) -> str:
    import llama_cpp

    if token < 0:
        return ""
    vocab = llama_cpp.llama_model_get_vocab(model)
    return bytes(llama_cpp.llama_vocab_get_text(vocab, token)).decode("utf-8", errors="replace")


def _token_bytes(vocab: Any, token: int) -> bytes:
    """The token's exact bytes, control tokens written out (no leading-space stripping)."""
    import llama_cpp

    buf = ctypes.create_string_buffer(64)
    n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, True)
    if n < 0:
        buf = ctypes.create_string_buffer(-n)
        n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, True)
    return buf.raw[:n]


def _logits(pointer: Any, n_vocab: int) -> npt.NDArray[np.float32]:
    import numpy as np

    return np.ctypeslib.as_array(pointer, shape=(n_vocab,))


def _logprob_entry(vocab: Any, logits: npt.NDArray[np.float32], token: int, data: bytes, top: int) -> LogprobEntry:
    """Log-softmax of the raw logits (before penalties, grammar and temperature), as OpenAI reports them."""
    import numpy as np

    peak = float(logits.max())
    log_total = peak + float(np.log(np.exp(logits - peak, dtype=np.float64).sum()))
    top_entries: list[TopLogprob] = []
    if top > 0:
        k = min(top, logits.shape[0])
        best = np.argpartition(logits, -k)[-k:]
        for candidate in best[np.argsort(logits[best])[::-1]]:
            candidate_bytes = data if int(candidate) == token else _token_bytes(vocab, int(candidate))
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
