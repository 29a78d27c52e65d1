"""What the llama provider tests share: prompts, collecting pieces, waiting on the engine,
and a reference decode by plain llama-cpp-python that shares no code with the engine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path

import pytest

from pipelines.events import Event, PromptProcessed
from pipelines.providers.base import CancelToken, DecodeParams, Prompt
from pipelines.providers.llama import LlamaProvider
from pipelines.types import GenerationRequest, Message, Output, Piece

# The real-model tests share one loaded model per module, so they share the module's loop.
module_loop = pytest.mark.asyncio(loop_scope="module")


def ask(content: str, system: str | None = None, request_id: str | None = None) -> Prompt:
    messages = (Message(role="system", content=system),) if system else ()
    request = GenerationRequest(request_id=request_id, model="smollm2", messages=()) if request_id else None
    return Prompt(messages=(*messages, Message(role="user", content=content)), request=request)


RAMBLE = ask("Write a very long story about a dragon and a knight.")
RAINBOW = ask("Name three colors of the rainbow.")
SEA = ask("Tell me about the sea.")
FRANCE = ask("What is the capital of France?")
GREEDY = DecodeParams(max_tokens=32, temperature=0.0)
SEEDED = DecodeParams(max_tokens=32, temperature=0.9, top_p=0.95, top_k=40, seed=1234)
LONG = DecodeParams(max_tokens=500, temperature=0.0)


async def collect(provider: LlamaProvider, prompt: Prompt, params: DecodeParams) -> list[Piece]:
    """The token pieces of one generation (its prompt-cache report left out)."""
    return [piece async for piece in provider.generate(prompt, params, CancelToken()) if isinstance(piece, Piece)]


async def read_choices(streams: list[AsyncGenerator[Output, None]]) -> list[list[Piece]]:
    async def read(stream: AsyncGenerator[Output, None]) -> list[Piece]:
        try:
            return [piece async for piece in stream if isinstance(piece, Piece)]
        finally:
            await stream.aclose()

    return await asyncio.gather(*(read(stream) for stream in streams))


def data(pieces: list[Piece]) -> list[bytes]:
    return [p.data for p in pieces]


def text_of(pieces: list[Piece]) -> str:
    return b"".join(p.data for p in pieces if not p.special).decode()


def prompt_events(events: list[Event], request_id: str) -> list[PromptProcessed]:
    return [e for e in events if isinstance(e, PromptProcessed) and e.request_id == request_id]


async def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Polls until `condition` holds (the timeout only keeps a broken build from hanging)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.002)


def plain_greedy(path: Path, tokens: list[int], max_tokens: int) -> bytes:
    """Greedy output of llama-cpp-python's own `Llama` for `tokens` from a fresh context:
    the reference the engine must reproduce (no flash attention, as the engine)."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(path), n_ctx=2048, n_threads=2, n_batch=512, flash_attn=False, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    try:
        out = b""
        for token in llm.generate(tokens, temp=0.0, reset=True):
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            out += llm.detokenize([token], special=True)
            max_tokens -= 1
            if max_tokens == 0:
                break
        return out
    finally:
        llm.close()
