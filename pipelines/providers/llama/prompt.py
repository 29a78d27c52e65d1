"""From a `Prompt` to the tokens a generation reads, checked before any decode work.

Harmony prompts arrive as text with their control tokens written literally, and are turned
into ids by `pipelines.harmony.vocab` (see there why not by llama.cpp); chat prompts as
messages, rendered with the model's own chat template. Either way, only the text around the
clients' messages is read for special tokens: a `<|im_end|>` typed into a message stays text
and cannot end a turn.
"""

from __future__ import annotations

import re
import secrets
from typing import Any, Protocol

import msgspec

from pipelines.errors import ContextLengthExceeded, InvalidRequest
from pipelines.harmony.vocab import HarmonyVocab
from pipelines.providers.base import DecodeParams, Prompt
from pipelines.providers.llama.grammar import gbnf_for
from pipelines.providers.llama.harmony import harmony_gbnf
from pipelines.providers.llama.runtime import runtime, token_text
from pipelines.providers.vocab import check_token_ids
from pipelines.types import Message

__all__ = ["Plan", "PromptReader", "Tokenizer", "special_token_pattern", "tokenize_spans"]

Spans = tuple[tuple[int, int], ...]


class Plan(msgspec.Struct, kw_only=True):
    """One generation, prepared (and validated) before it takes a slot."""

    tokens: list[int]
    max_new: int
    gbnf: str | None
    params: DecodeParams


class Tokenizer(Protocol):
    """What prompt reading needs of a loaded model (llama-cpp-python's `LlamaModel` has it)."""

    def tokenize(self, text: bytes, add_bos: bool, special: bool) -> list[int]: ...

    def token_bos(self) -> int: ...

    @property
    def model(self) -> Any: ...


class PromptReader:
    """A loaded model's chat template and special tokens, and the prompt it read last.

    Built on the loading thread: reading every token's attributes takes ~15 ms. `harmony`
    is the vocabulary of a Harmony model (gpt-oss), checked to be the model's."""

    def __init__(self, tok: Tokenizer, metadata: dict[str, str], harmony: HarmonyVocab | None = None) -> None:
        self.tok = tok
        self._harmony = harmony
        self._formatter = _chat_formatter(metadata, tok.model)
        self._specials = special_token_pattern(tok.model)
        self._last: tuple[Prompt, list[int]] | None = None

    def tokens(self, prompt: Prompt) -> list[int]:
        """The prompt's tokens exactly as a generation reads them."""
        # The pipeline counts a prompt right before generating it: remember the last one
        # so a long template render and tokenization happen once per request.
        last = self._last
        if last is not None and (last[0] is prompt or last[0] == prompt):
            return last[1]
        tokens = self._tokenize(prompt)
        self._last = (prompt, tokens)
        return tokens

    def plan(self, prompt: Prompt, params: DecodeParams, n_ctx: int) -> Plan:
        """Grammar, tokens and context checks: everything that can fail before decode work.

        `n_ctx` is the context one generation has (one slot's share)."""
        gbnf = harmony_gbnf(prompt, params) if self._harmony is not None else gbnf_for(params.response_format)
        tokens = self.tokens(prompt)
        param = prompt.request.prompt_param if prompt.request is not None else "messages"
        if not tokens:
            raise InvalidRequest("the prompt is empty", param=param)
        if len(tokens) + 1 > n_ctx:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {n_ctx} tokens; the prompt has {len(tokens)} tokens.",
                param=param,
            )
        # Clamp so prompt + output never overflow the context: the cap ends the output.
        return Plan(tokens=tokens, max_new=min(params.max_tokens, n_ctx - len(tokens)), gbnf=gbnf, params=params)

    def _tokenize(self, prompt: Prompt) -> list[int]:
        tok = self.tok
        if prompt.tokens is not None:
            return self._known(prompt.tokens)  # token ids are read as they are: no BOS added
        if prompt.text is not None and self._harmony is not None:
            # openai-harmony's ids exactly (no BOS: gpt-oss prompts have none); a raw
            # completion's text is all plain, so it stays text here too
            return self._harmony.encode_prompt(prompt.text, prompt.plain)
        if prompt.text is not None:
            # Harmony text writes its control tokens literally; `add_bos` defers to the
            # model's own add_bos flag.
            tokens = tokenize_spans(tok, prompt.text, prompt.plain, self._specials, add_bos=True)
        elif self._formatter is not None:
            text, plain = self.render_template(prompt.messages)
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

    def _known(self, tokens: tuple[int, ...]) -> list[int]:
        """`tokens`, each checked to be in the vocabulary (a 400 naming the first that is not)."""
        n_vocab = runtime().llama_vocab_n_tokens(runtime().llama_model_get_vocab(self.tok.model))
        check_token_ids(tokens, n_vocab, param="prompt", vocabulary=f"{n_vocab} ids")
        return list(tokens)

    def render_template(self, messages: tuple[Message, ...]) -> tuple[str, Spans]:
        """The chat template's text for `messages`, and the spans of their contents in it.

        The template is rendered with an unguessable marker in place of each content, so
        the contents can be found again (and read as plain text: a client's `<|im_end|>`
        stays text). A template that changes contents (trims them, say) is caught by
        comparing with a normal render; its text is then read as a whole."""
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


def _chat_formatter(metadata: dict[str, str], model: Any) -> Any:
    """The model's own chat template (None for base models without one)."""
    template = metadata.get("tokenizer.chat_template")
    if not template:
        return None
    llama_cpp = runtime()
    vocab = llama_cpp.llama_model_get_vocab(model)
    return llama_cpp.llama_chat_format.Jinja2ChatFormatter(
        template=template,
        eos_token=token_text(model, llama_cpp.llama_vocab_eos(vocab)),
        bos_token=token_text(model, llama_cpp.llama_vocab_bos(vocab)),
        add_generation_prompt=True,
    )


def _template_message(message: Message) -> dict[str, str]:
    return {"role": "system" if message.role == "developer" else message.role, "content": message.content}


def special_token_pattern(model: Any) -> re.Pattern[str] | None:
    """What llama.cpp parses as special tokens when asked to: control, user-defined and
    unknown tokens, longest first (as its tokenizer tries them)."""
    llama_cpp = runtime()
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
    tok: Tokenizer, text: str, plain: Spans, specials: re.Pattern[str] | None, *, add_bos: bool
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
