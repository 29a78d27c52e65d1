"""The llama.cpp provider on a real gpt-oss GGUF (tiny, random weights, the real o200k_harmony
vocabulary): prompt ids equal openai-harmony's, client text never becomes a special token,
and the grammars hold Harmony output to tool choices and response formats."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import pytest_asyncio

from pipelines.config import LlamaModelConfig
from pipelines.errors import InvalidRequest
from pipelines.harmony.decoder import HarmonyDecoder
from pipelines.harmony.render import render_prompt
from pipelines.harmony.vocab import FIRST_SPECIAL
from pipelines.providers.base import DecodeParams, LoadFailure, OpenedCall, Prompt
from pipelines.providers.llama import LlamaProvider
from pipelines.providers.llama.harmony import prefixed_rules
from pipelines.types import Close, GenerationRequest, Message, Open, Piece, ResponseFormat, Text, Tool, ToolCall
from tests.pipelines.providers.llama.helpers import collect, module_loop
from tests.support.configs import smollm2_config
from tests.support.harmony_reference import FORGED, SCRIPTS, ReferenceTokens

pytestmark = pytest.mark.slow

DATE = "2026-12-04"


def _tool(name: str, prop: str, values: list[str]) -> Tool:
    schema = {
        "type": "object",
        "properties": {prop: {"type": "string", "enum": values}},
        "required": [prop],
        "additionalProperties": False,
    }
    return Tool(name=name, description=f"Looks up the {prop}.", parameters=schema, strict=True)


OPENED = [Piece(data=b"<|channel|>", special=True, tokens=0), Piece(data=b"commentary to=functions.", tokens=0)]
WEATHER = _tool("get_weather", "city", ["Paris", "Rome", "Zürich"])
TIME = _tool("get_time", "zone", ["UTC", "CET"])
ANSWER = ResponseFormat(
    type="json_schema",
    name="answer",
    description="The verdict.",
    schema={
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "grade": {"type": "string", "enum": ["a", "b", "c"]}},
        "required": ["ok", "grade"],
        "additionalProperties": False,
    },
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def oss(tiny_gpt_oss: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LlamaProvider]:
    config = LlamaModelConfig(
        id="tiny-oss", path=str(tiny_gpt_oss), format="harmony", threads=2, context_length=2048, role="primary"
    )
    provider = LlamaProvider(config, cache_dir=tmp_path_factory.mktemp("oss-cache"))
    await provider.load()
    yield provider
    await provider.unload()


def _prompt(messages: list[Message], **kwargs: Any) -> Prompt:
    rendered = render_prompt(messages, current_date=DATE, **kwargs)
    return Prompt(text=str(rendered), plain=rendered.plain)


def _conversation(text: str) -> list[Message]:
    """Every place client text goes: instructions, user, assistant (reasoning, answer, call
    arguments) and a tool result."""
    return [
        Message(role="system", content=f"Reply briefly. {text}"),
        Message(role="user", content=text),
        Message(
            role="assistant",
            reasoning=f"Think: {text}",
            tool_calls=(ToolCall(id="c1", name="get_weather", arguments=json.dumps({"city": text})),),
        ),
        Message(role="tool", tool_call_id="c1", content=text),
        Message(role="assistant", content=f"So: {text}"),
        Message(role="user", content=f"And {text}?"),
    ]


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_prompt_ids_equal_openai_harmony(oss: LlamaProvider, reference_tokens: ReferenceTokens, script: str) -> None:
    messages = _conversation(SCRIPTS[script])
    ids = oss.prompts.tokens(_prompt(messages, tools=[WEATHER, TIME]))
    assert ids == reference_tokens(messages, tools=[WEATHER, TIME], current_date=DATE)


def test_llama_cpp_tokenizer_would_split_these_scripts_otherwise(oss: LlamaProvider) -> None:
    # Why the ids are not llama.cpp's: its gpt-4o pre-tokenizer splits combining marks off.
    rendered = render_prompt([Message(role="user", content=SCRIPTS["Devanagari"])], current_date=DATE)
    ours = oss.prompts.tokens(Prompt(text=str(rendered), plain=rendered.plain))
    theirs = oss.prompts.tok.tokenize(str(rendered).encode(), add_bos=False, special=True)
    assert ours != theirs


def test_forged_structure_stays_text(oss: LlamaProvider, reference_tokens: ReferenceTokens) -> None:
    forged = _conversation(FORGED)
    ids = oss.prompts.tokens(_prompt(forged))
    assert ids == reference_tokens(forged, current_date=DATE)
    # The same conversation with harmless text has exactly as many special ids: the client's
    # spelling of them produced none.
    plain = _conversation("plain words")
    assert sum(t >= FIRST_SPECIAL for t in ids) == sum(t >= FIRST_SPECIAL for t in oss.prompts.tokens(_prompt(plain)))
    # llama.cpp's own tokenizer reads them as special even with special-token parsing off.
    assert oss.prompts.tok.tokenize(b"<|start|>", add_bos=False, special=False)[0] >= FIRST_SPECIAL


@module_loop
async def test_a_vocabulary_other_than_o200k_harmony_is_refused(tmp_path: Path) -> None:
    provider = LlamaProvider(smollm2_config(format="harmony"), cache_dir=tmp_path)
    with pytest.raises(LoadFailure) as failure:
        await provider.load()
    assert failure.value.reason == "vocab_mismatch"


def _messages(pieces: list[Any]) -> list[tuple[Open, str]]:
    decoder = HarmonyDecoder()
    events = [e for p in pieces for e in decoder.feed(p)] + decoder.finish()
    out: list[tuple[Open, str]] = []
    for event in events:
        if isinstance(event, Open):
            out.append((event, ""))
        elif isinstance(event, Text):
            out[-1] = (out[-1][0], out[-1][1] + event.text)
        else:
            assert isinstance(event, Close)
    return out


@module_loop
async def test_required_call_names_a_declared_tool_with_valid_arguments(oss: LlamaProvider) -> None:
    tools = (WEATHER, TIME)
    base = _prompt([Message(role="user", content="What now?")], tools=list(tools))
    prompt = Prompt(
        text=base.text + "<|channel|>commentary to=functions.",
        plain=base.plain,
        call=OpenedCall(tools=tools, named=False),
    )
    names = set()
    for seed in range(4):
        pieces = await collect(oss, prompt, DecodeParams(max_tokens=48, temperature=1.0, seed=seed))
        # the header the prompt opened, then the model's pieces
        [(call, arguments)] = _messages([*OPENED, *pieces])
        assert call.channel == "commentary"
        name = (call.recipient or "").removeprefix("functions.")
        tool = next(t for t in tools if t.name == name)
        jsonschema.validate(json.loads(arguments), tool.parameters or {})
        names.add(name)
    assert names  # at least one declared name came back (which ones is the model's choice)


@module_loop
async def test_response_format_constrains_only_the_final_message(oss: LlamaProvider) -> None:
    prompt = _prompt([Message(role="user", content="Grade it.")], response_format=ANSWER)
    request = GenerationRequest(request_id="r", model="tiny-oss", messages=(), response_format=ANSWER)
    prompt = Prompt(text=prompt.text, plain=prompt.plain, request=request)
    # Greedy, this model goes straight to the final channel.
    pieces = await collect(oss, prompt, DecodeParams(max_tokens=48, temperature=0.0, response_format=ANSWER))
    [(final, text)] = _messages(pieces)
    assert final.channel == "final"
    jsonschema.validate(json.loads(text), ANSWER.schema or {})
    # Sampled, it often reasons first: free text on the analysis channel, never a special
    # token there (the grammar keeps the headers for the protocol).
    reasoned = 0
    for seed in range(3):
        pieces = await collect(
            oss, prompt, DecodeParams(max_tokens=24, temperature=1.0, seed=seed, response_format=ANSWER)
        )
        messages = _messages(pieces)
        assert messages[0][0].channel in ("analysis", "final")
        if messages[0][0].channel == "analysis":
            reasoned += 1
            assert [p.data for p in pieces if p.special] == [b"<|channel|>", b"<|message|>"]
        else:
            jsonschema.validate(json.loads(messages[0][1]), ANSWER.schema or {})
    assert reasoned


def test_prefixed_rules_rename_rules_only() -> None:
    gbnf = 'root ::= item{1,3} "root item" [a-z0-9-] <[200005]> # a comment\nitem ::= "x\\"y" | root\n'
    assert prefixed_rules(gbnf, "p-") == (
        'p-root ::= p-item{1,3} "root item" [a-z0-9-] <[200005]> \np-item ::= "x\\"y" | p-root\n'
    )


@module_loop
async def test_a_tool_name_is_a_literal_whatever_it_holds(oss: LlamaProvider) -> None:
    odd = Tool(name='a"b\\c\n')  # the wires allow no such name; the grammar must hold it all the same
    base = _prompt([Message(role="user", content="Go.")], tools=[odd])
    prompt = Prompt(
        text=base.text + "<|channel|>commentary to=functions.", plain=base.plain, call=OpenedCall((odd,), False)
    )
    pieces = await collect(oss, prompt, DecodeParams(max_tokens=8, temperature=0.0))
    assert b"".join(p.data for p in pieces).startswith(b'a"b\\c\n')


def test_a_strict_tool_whose_schema_is_not_json_schema_is_a_client_error(oss: LlamaProvider) -> None:
    bad = Tool(name="f", parameters={"type": "bogus"}, strict=True)
    base = _prompt([Message(role="user", content="Go.")], tools=[bad, WEATHER])
    prompt = Prompt(
        text=base.text + "<|channel|>commentary to=functions.", plain=base.plain, call=OpenedCall((bad, WEATHER), False)
    )
    with pytest.raises(InvalidRequest) as refused:
        oss.prompts.plan(prompt, DecodeParams(max_tokens=8), oss.context_length)
    assert refused.value.param == "tools" and "'f'" in refused.value.message
