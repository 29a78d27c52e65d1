"""openai-harmony as the reference renderer and parser, loaded offline from `shared/vocab`."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from pipelines.types import Message, Tool

# CI clones the repository with `shared/` as its sibling, exactly like the dev machines.
_VOCAB = Path(__file__).resolve().parents[2].parent / "shared" / "vocab"

ReferenceRender = Callable[..., str]
ReferenceTokens = Callable[..., list[int]]


@pytest.fixture(scope="session")
def harmony_encoding() -> Any:
    if not (_VOCAB / "o200k_base.tiktoken").is_file():
        pytest.fail(f"Harmony vocabulary not found at {_VOCAB}: the tests need ../shared/vocab beside the repo")
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = str(_VOCAB)
    from openai_harmony import HarmonyEncodingName, load_harmony_encoding

    return load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)


@pytest.fixture(scope="session")
def reference_render(harmony_encoding: Any, reference_tokens: ReferenceTokens) -> ReferenceRender:
    """Render a request the way vLLM's gpt-oss path feeds it to openai-harmony."""

    def render(messages: Sequence[Message], **kwargs: Any) -> str:
        return str(harmony_encoding.decode(reference_tokens(messages, **kwargs)))

    return render


@pytest.fixture(scope="session")
def reference_tokens(harmony_encoding: Any) -> ReferenceTokens:
    """The tokens openai-harmony renders for a request, built as vLLM's gpt-oss path does."""
    import openai_harmony as oh

    efforts = {"low": oh.ReasoningEffort.LOW, "medium": oh.ReasoningEffort.MEDIUM, "high": oh.ReasoningEffort.HIGH}

    def render(
        messages: Sequence[Message],
        *,
        tools: Sequence[Tool] = (),
        reasoning_effort: str = "medium",
        current_date: str | None = None,
        knowledge_cutoff: str = "2024-06",
        model_identity: str | None = None,
    ) -> list[int]:
        system = oh.SystemContent.new().with_reasoning_effort(efforts[reasoning_effort])
        system = system.with_knowledge_cutoff(knowledge_cutoff)
        if model_identity is not None:
            system = system.with_model_identity(model_identity)
        if current_date is not None:
            system = system.with_conversation_start_date(current_date)
        conv: list[oh.Message] = [oh.Message.from_role_and_content(oh.Role.SYSTEM, system)]

        instructions = "\n\n".join(m.content for m in messages if m.role in ("system", "developer") and m.content)
        if instructions or tools:
            developer = oh.DeveloperContent.new()
            if instructions:
                developer = developer.with_instructions(instructions)
            if tools:
                developer = developer.with_function_tools(
                    [oh.ToolDescription.new(t.name, t.description or "", parameters=t.parameters) for t in tools]
                )
            conv.append(oh.Message.from_role_and_content(oh.Role.DEVELOPER, developer))

        names: dict[str, str] = {}
        for m in messages:
            if m.role == "user":
                conv.append(oh.Message.from_role_and_content(oh.Role.USER, m.content))
            elif m.role == "assistant":
                if m.reasoning:
                    conv.append(
                        oh.Message.from_role_and_content(oh.Role.ASSISTANT, m.reasoning).with_channel("analysis")
                    )
                if not m.tool_calls:
                    conv.append(oh.Message.from_role_and_content(oh.Role.ASSISTANT, m.content).with_channel("final"))
                    continue
                if m.content:
                    conv.append(
                        oh.Message.from_role_and_content(oh.Role.ASSISTANT, m.content).with_channel("commentary")
                    )
                for call in m.tool_calls:
                    names[call.id] = call.name
                    conv.append(
                        oh.Message.from_role_and_content(oh.Role.ASSISTANT, call.arguments)
                        .with_channel("commentary")
                        .with_recipient(f"functions.{call.name}")
                        .with_content_type("<|constrain|>json")
                    )
            elif m.role == "tool":
                name = names.get(m.tool_call_id or "") or m.name
                author = oh.Author.new(oh.Role.TOOL, f"functions.{name}")
                conv.append(
                    oh.Message.from_author_and_content(author, m.content)
                    .with_channel("commentary")
                    .with_recipient("assistant")
                )
        return list(
            harmony_encoding.render_conversation_for_completion(oh.Conversation.from_messages(conv), oh.Role.ASSISTANT)
        )

    return render
