"""The tokenizer endpoints' wire, as vLLM serves them: `POST /tokenize` (a `prompt`, or chat
`messages` read as a generation reads them), `POST /detokenize`, `GET /tokenizer_info`.
`model` may be left out: the gateway's first model answers (vLLM serves one model)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from compat.requests import ChatCompletionRequest, ToolDefinition, WireMessage
from compat.translate import to_internal
from pipelines.errors import InvalidRequest, Unsupported
from pipelines.types import GenerationRequest

__all__ = [
    "DetokenizeRequest",
    "DetokenizeResponse",
    "TokenizeRequest",
    "TokenizeResponse",
    "TokenizerInfo",
    "chat_request",
    "decode_detokenize_request",
    "decode_tokenize_request",
]


class TokenizeRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`prompt` (vLLM's TokenizeCompletionRequest) or `messages` (its TokenizeChatRequest).
    `add_special_tokens` defaults to true for a prompt (the model's BOS), false for messages
    (the chat template writes its own)."""

    model: str | None = None
    prompt: str | None = None
    messages: Annotated[list[WireMessage], Meta(min_length=1)] | None = None
    add_special_tokens: bool | None = None
    return_token_strs: bool | None = None
    add_generation_prompt: bool | None = None
    continue_final_message: bool | None = None
    tools: list[ToolDefinition] | None = None


class TokenizeResponse(msgspec.Struct, kw_only=True):
    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str] | None = None


class DetokenizeRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    tokens: list[int]
    model: str | None = None


class DetokenizeResponse(msgspec.Struct, kw_only=True):
    prompt: str


class TokenizerInfo(msgspec.Struct, kw_only=True):
    """What a `tokenizer_config.json` says of the model's tokenizer (vLLM's response; lm-eval
    reads `eos_token` and `bos_token`)."""

    tokenizer_class: str
    bos_token: str | None = None
    eos_token: str | None = None
    pad_token: str | None = None
    unk_token: str | None = None
    add_bos_token: bool | None = None
    add_eos_token: bool | None = None
    chat_template: str | None = None
    model_max_length: int | None = None
    vocab_size: int | None = None


_TOKENIZE = msgspec.json.Decoder(TokenizeRequest)
_DETOKENIZE = msgspec.json.Decoder(DetokenizeRequest)


def decode_tokenize_request(body: bytes) -> TokenizeRequest:
    req = _TOKENIZE.decode(body)
    if (req.prompt is None) == (req.messages is None):
        raise InvalidRequest("Send either `prompt` or `messages`.", param="prompt", code="invalid_value")
    return req


def decode_detokenize_request(body: bytes) -> DetokenizeRequest:
    return _DETOKENIZE.decode(body)


def chat_request(req: TokenizeRequest, model: str, request_id: str) -> GenerationRequest:
    """The generation request whose prompt `messages` are (tools included)."""
    assert req.messages is not None
    if req.continue_final_message or req.add_generation_prompt is False:
        raise Unsupported(
            "Chat prompts are tokenized as a generation reads them: with the generation prompt, "
            "the final message not continued.",
            param="add_generation_prompt" if req.add_generation_prompt is False else "continue_final_message",
        )
    chat = ChatCompletionRequest(messages=req.messages, model=model, tools=req.tools)
    return to_internal(chat, request_id)


def info_of(raw: dict[str, Any]) -> TokenizerInfo:
    return msgspec.convert(raw, TokenizerInfo)
