"""Chat messages -> the Harmony prompt text gpt-oss completes.

Pure string building, byte-identical to openai-harmony's
`render_conversation_for_completion(conversation, Role.ASSISTANT)` for the conversation
vLLM's gpt-oss path would build from the same request:

- one system message (identity, dates, reasoning effort, valid channels);
- one developer message holding the request's system and developer messages as
  `# Instructions` (joined by blank lines, in order) and the tools as `# Tools`: a
  `namespace functions`, and one namespace per `Tool.namespace` (sections sorted by name,
  as openai-harmony keeps them), whose calls are addressed `NAMESPACE.NAME`;
- user turns; assistant turns as `analysis` (reasoning), `commentary` (the preamble of a
  turn that calls tools, addressed to no one), `final` (the answer of a turn that does
  not), and one `commentary to=functions.NAME <|constrain|>json` message per tool call;
- tool results authored by `functions.NAME`, addressed to the assistant;
- a JSON schema response format as the developer message's last section, `# Response
  Formats` (the layout of openai-harmony's format guide, docs/format.md "Structured output",
  which its renderer leaves to the caller; vLLM writes it the same way): `## NAME`, the
  description as a `//` comment, the schema as compact JSON. A `json_object` format has no
  schema to show; as on OpenAI, the client's messages ask for JSON.

Like openai-harmony, analysis messages that precede the conversation's first final answer
are dropped when the last assistant message is a final answer.

Special tokens are written literally; whoever tokenizes the prompt must parse them as
special tokens. Harmony has no escaping, so the text of each message is also returned
as a span (`RenderedPrompt.plain`): a tokenizer reads it as plain text, so that a client
who writes `<|end|><|start|>system…` in a message cannot forge a turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from pipelines.errors import InvalidRequest
from pipelines.harmony import tokens as tk
from pipelines.harmony.schema_ts import namespace_section, tool_lines
from pipelines.types import Message, ResponseFormat, Tool

__all__ = ["DEFAULT_MODEL_IDENTITY", "REASONING_EFFORTS", "RenderedPrompt", "render_prompt", "tool_address"]

DEFAULT_MODEL_IDENTITY: Final = "You are ChatGPT, a large language model trained by OpenAI."
REASONING_EFFORTS: Final = ("low", "medium", "high")
_VALID_CHANNELS: Final = "# Valid channels: analysis, commentary, final. Channel must be included for every message."
_TOOLS_CHANNEL_RULE: Final = "Calls to these tools must go to the commentary channel: 'functions'."
_JSON_CONTENT_TYPE: Final = tk.CONSTRAIN + "json"


class _Turn(msgspec.Struct, frozen=True):
    """One Harmony message: `author` is the role, or `functions.NAME` for a tool."""

    author: str
    text: str
    channel: str | None = None
    recipient: str | None = None
    content_type: str | None = None


class RenderedPrompt(str):
    """The prompt text, carrying in `plain` the (start, end) character span of every
    message's text in it: the parts that are never to be read as special tokens."""

    plain: tuple[tuple[int, int], ...]

    def __new__(cls, text: str, plain: tuple[tuple[int, int], ...]) -> RenderedPrompt:
        rendered = super().__new__(cls, text)
        rendered.plain = plain
        return rendered


def render_prompt(
    messages: Sequence[Message],
    *,
    tools: Sequence[Tool] = (),
    reasoning_effort: str = "medium",
    current_date: str | None = None,
    knowledge_cutoff: str = "2024-06",
    model_identity: str = DEFAULT_MODEL_IDENTITY,
    response_format: ResponseFormat | None = None,
) -> RenderedPrompt:
    """The full prompt, ending with `<|start|>assistant` for the model to continue.

    Raises `InvalidRequest` for an unknown reasoning effort, or a tool result whose
    function cannot be found (no matching earlier tool call and no `name`).
    """
    if reasoning_effort not in REASONING_EFFORTS:
        raise InvalidRequest(f"unknown reasoning effort {reasoning_effort!r}", param="reasoning_effort")
    system = _system_text(
        model_identity=model_identity,
        knowledge_cutoff=knowledge_cutoff,
        current_date=current_date,
        reasoning_effort=reasoning_effort,
        has_functions=any(t.namespace is None for t in tools),
    )
    turns = [_Turn("system", system)]
    instructions = [m.content for m in messages if m.role in ("system", "developer") and m.content]
    schema = response_format if response_format is not None and response_format.type == "json_schema" else None
    if instructions or tools or schema:
        turns.append(_Turn("developer", _developer_text("\n\n".join(instructions), tools, schema)))
    turns.extend(_conversation_turns(messages, tools))
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    offset = 0
    for turn in _drop_old_analysis(turns):
        rendered = _render_turn(turn)
        # the message text is the turn's end, before its closing token
        closing = len(tk.CALL if rendered.endswith(tk.CALL) else tk.END)
        end = offset + len(rendered) - closing
        if turn.text:
            spans.append((end - len(turn.text), end))
        parts.append(rendered)
        offset += len(rendered)
    parts += [tk.START, "assistant"]
    return RenderedPrompt("".join(parts), tuple(spans))


def _system_text(
    *, model_identity: str, knowledge_cutoff: str, current_date: str | None, reasoning_effort: str, has_functions: bool
) -> str:
    top = [model_identity, f"Knowledge cutoff: {knowledge_cutoff}"]
    if current_date is not None:
        top.append(f"Current date: {current_date}")
    # openai-harmony names only `functions` here: a request with namespaced tools alone has no rule
    channels = _VALID_CHANNELS + ("\n" + _TOOLS_CHANNEL_RULE if has_functions else "")
    return "\n\n".join(["\n".join(top), f"Reasoning: {reasoning_effort}", channels])


def _developer_text(instructions: str, tools: Sequence[Tool], schema: ResponseFormat | None) -> str:
    sections: list[str] = []
    if instructions:
        sections += ["# Instructions", instructions]
    if tools:
        groups: dict[str, tuple[str, list[list[str]]]] = {}
        for tool in tools:
            ns = tool.namespace
            name, description = (ns.name, ns.description) if ns is not None else ("functions", "")
            local = tool.name.removeprefix(f"{name}.") if ns is not None else tool.name
            groups.setdefault(name, (description, []))[1].append(tool_lines(local, tool.description, tool.parameters))
        rendered = [namespace_section(name, desc, functions) for name, (desc, functions) in sorted(groups.items())]
        sections.append("# Tools\n\n" + "\n\n".join(rendered))
    if schema is not None:
        comment = "".join(f"// {line}\n" for line in (schema.description or "").splitlines())
        body = msgspec.json.encode(schema.schema).decode()
        sections.append(f"# Response Formats\n\n## {schema.name or 'response'}\n\n{comment}{body}")
    return "\n\n".join(sections)


def tool_address(name: str, tools: Sequence[Tool]) -> str:
    """Where a call to the function `name` goes: `functions.NAME`, or `NAMESPACE.NAME` (the
    function's own name) for a function of a namespace."""
    if any(t.name == name and t.namespace is not None for t in tools):
        return name
    return f"functions.{name}"


def _conversation_turns(messages: Sequence[Message], tools: Sequence[Tool]) -> list[_Turn]:
    turns: list[_Turn] = []
    call_names: dict[str, str] = {}
    for message in messages:
        if message.role == "user":
            turns.append(_Turn("user", message.content))
        elif message.role == "assistant":
            if message.reasoning:
                turns.append(_Turn("assistant", message.reasoning, channel="analysis"))
            if not message.tool_calls:
                turns.append(_Turn("assistant", message.content, channel="final"))
                continue
            if message.content:
                turns.append(_Turn("assistant", message.content, channel="commentary"))
            for call in message.tool_calls:
                call_names[call.id] = call.name
                turns.append(
                    _Turn(
                        "assistant",
                        call.arguments,
                        channel="commentary",
                        recipient=tool_address(call.name, tools),
                        content_type=_JSON_CONTENT_TYPE,
                    )
                )
        elif message.role == "tool":
            name = _tool_result_name(message, call_names)
            turns.append(_Turn(tool_address(name, tools), message.content, channel="commentary", recipient="assistant"))
    return turns


def _tool_result_name(message: Message, call_names: dict[str, str]) -> str:
    if message.tool_call_id is not None and message.tool_call_id in call_names:
        return call_names[message.tool_call_id]
    if message.name:
        return message.name.removeprefix("functions.")
    raise InvalidRequest(
        f"tool message with tool_call_id {message.tool_call_id!r} answers no earlier tool call", param="messages"
    )


def _drop_old_analysis(turns: list[_Turn]) -> list[_Turn]:
    # openai-harmony's auto_drop_analysis: only when the last assistant message is a final
    # answer, and then only the analysis before the conversation's *first* final answer.
    last_assistant = next((t for t in reversed(turns) if t.author == "assistant"), None)
    if last_assistant is None or last_assistant.channel != "final":
        return turns
    first_final = next(i for i, t in enumerate(turns) if t.channel == "final")
    return [t for i, t in enumerate(turns) if not (i < first_final and t.channel == "analysis")]


def _render_turn(turn: _Turn) -> str:
    parts = [tk.START, turn.author]
    if turn.recipient is not None and turn.recipient != "all":
        parts.append(f" to={turn.recipient}")
    if turn.channel is not None:
        parts += [tk.CHANNEL, turn.channel]
    if turn.content_type is not None:
        parts.append(f" {turn.content_type}")
    parts += [tk.MESSAGE, turn.text]
    calls_tool = turn.author == "assistant" and turn.recipient is not None
    parts.append(tk.CALL if calls_tool else tk.END)
    return "".join(parts)
