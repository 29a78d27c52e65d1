"""gpt-oss on llama.cpp: its vocabulary checked at load, and the grammars that hold Harmony
output to a request.

Harmony prompts are tokenized by `pipelines.harmony.vocab` (llama.cpp's tokenizer reads
special tokens into client text and splits combining marks its own way), which is only right
for a model whose vocabulary is o200k_harmony, id for id: `check_vocabulary` makes sure at load.

A grammar for a Harmony model covers the model's whole output, headers included, and names
special tokens by id (`<[200005]>`): llama.cpp reads `<|channel|>`, `<|message|>`,
`<|start|>`, `<|constrain|>` and `<|end|>` as ordinary (user-defined) tokens, and a quoted
`"<|channel|>"` in a grammar may be spelled with text tokens. An end-of-generation token
(`<|return|>`, `<|call|>`, `<|endoftext|>`) never appears in one: llama.cpp aborts the
process when a grammar names one (measured, llama-cpp-python 0.3.36). A complete grammar
allows only end-of-generation tokens, which end the generation; the pipeline's parser
closes the last message either way.

- A response format constrains only the final message: the model may first reason on the
  analysis channel (free text without special tokens), then must open
  `<|start|>assistant<|channel|>final<|message|>` and write the JSON. With tools offered, a
  call (its name among them, its arguments JSON) may come instead of the final message.
- A call the prompt opened (tool_choice) must name one of its tools and give it JSON
  arguments, held to the tool's schema when the tool is `strict`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

from pipelines.errors import InvalidRequest
from pipelines.harmony import tokens as tk
from pipelines.harmony.vocab import FIRST_SPECIAL, N_VOCAB, SPECIAL_IDS, HarmonyVocab
from pipelines.providers.base import DecodeParams, LoadFailure, OpenedCall, Prompt
from pipelines.providers.llama.grammar import gbnf_for
from pipelines.providers.llama.runtime import runtime, token_bytes
from pipelines.types import ResponseFormat, Tool

__all__ = ["check_vocabulary", "harmony_gbnf", "prefixed_rules"]

_CHANNEL: Final = f"<[{SPECIAL_IDS[tk.CHANNEL]}]>"
_MESSAGE: Final = f"<[{SPECIAL_IDS[tk.MESSAGE]}]>"
_CONSTRAIN: Final = f"<[{SPECIAL_IDS[tk.CONSTRAIN]}]>"
_START: Final = f"<[{SPECIAL_IDS[tk.START]}]>"
_END: Final = f"<[{SPECIAL_IDS[tk.END]}]>"

_FREE_TEXT: Final = 'h-free ::= ( [^<] | "<" [^|] )*'
"""Reasoning: any text but the start of a special token's spelling (so no special token)."""

_JSON_OBJECT: Final = ResponseFormat(type="json_object")


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


def harmony_gbnf(prompt: Prompt, params: DecodeParams) -> str | None:
    """The grammar for a Harmony model's output (None: unconstrained)."""
    if prompt.call is not None:
        return _opened_call(prompt.call)
    if params.response_format.type == "text":
        return None
    request = prompt.request
    tools: Sequence[Tool] = request.tools if request is not None and request.tool_choice == "auto" else ()
    rules = [prefixed_rules(_required(gbnf_for(params.response_format)), "h-answer-")]
    answer = f"{_CHANNEL} {_literal('final')} {_MESSAGE} h-answer-root"
    if tools:
        rules += _call_rules(tools)
        answer = f"( {answer} | {_CHANNEL} {_literal('commentary to=functions.')} h-call )"
    rules += [
        f"root ::= h-analysis? {answer}",
        f"h-analysis ::= {_CHANNEL} {_literal('analysis')} {_MESSAGE} h-free {_END} {_START} {_literal('assistant')}",
        _FREE_TEXT,
    ]
    return "\n".join(rules) + "\n"


def _opened_call(call: OpenedCall) -> str:
    if call.named:
        return prefixed_rules(_arguments(call.tools[0]), "h-args-") + "\nroot ::= h-args-root\n"
    return "\n".join([*_call_rules(call.tools), "root ::= h-call"]) + "\n"


def _call_rules(tools: Sequence[Tool]) -> list[str]:
    """`h-call`: a tool's name, the header's end, and that tool's arguments."""
    rules: list[str] = []
    names: list[str] = []
    for i, tool in enumerate(tools):
        rules.append(prefixed_rules(_arguments(tool), f"h-args{i}-"))
        names.append(
            f"{_literal(tool.name)} {_literal(' ')}? {_CONSTRAIN} {_literal('json')} {_MESSAGE} h-args{i}-root"
        )
    rules.append("h-call ::= " + " | ".join(f"( {n} )" for n in names))
    return rules


def _arguments(tool: Tool) -> str:
    """A tool's arguments: its schema's grammar when `strict`, else any JSON object."""
    if tool.strict and tool.parameters is not None:
        schema = ResponseFormat(type="json_schema", schema=tool.parameters, name=tool.name, strict=True)
        try:
            return _required(gbnf_for(schema))
        except InvalidRequest as exc:
            message = f"function '{tool.name}': {exc.message}"
            raise InvalidRequest(message, param="tools", code=exc.code or "invalid_value") from None
    return _required(gbnf_for(_JSON_OBJECT))


def _required(gbnf: str | None) -> str:
    assert gbnf is not None, "a JSON response format always has a grammar"
    return gbnf


def _literal(text: str) -> str:
    """`text` as a GBNF string literal (quotes, backslashes and control characters escaped)."""
    return '"' + "".join(f"\\x{ord(c):02x}" if c in '"\\' or ord(c) < 0x20 or c == "\x7f" else c for c in text) + '"'


_GBNF_LEXEME: Final = re.compile(
    r"""
      (?P<string>"(?:\\.|[^"\\])*")
    | (?P<chars>\[(?:\\.|[^\]\\])*\])
    | (?P<token>!?<[^>]*>)
    | (?P<braces>\{[^}]*\})
    | (?P<comment>\#[^\n]*)
    | (?P<name>[a-zA-Z0-9-]+)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


def prefixed_rules(gbnf: str, prefix: str) -> str:
    """`gbnf` with every rule name (defined or referenced) prefixed, so that several
    grammars' rules can live in one grammar (`root` becomes `{prefix}root`)."""
    out: list[str] = []
    for lexeme in _GBNF_LEXEME.finditer(gbnf):
        if lexeme.lastgroup == "name":
            out.append(prefix + lexeme.group())
        elif lexeme.lastgroup != "comment":
            out.append(lexeme.group())
    return "".join(out)
