"""The per-token ceiling: how many tokens a second the gateway itself can carry from the
llama engine's scheduler to a client, when decoding costs nothing.

    .venv/bin/python bench/token_ceiling.py               # about a minute

A gateway serves SmolLM2 (real weights, tokenizer and prompt path) through the llama
provider with `InstantEngine`: the real scheduler thread, slots, outbox hand-off,
pipeline, channel mapping and SSE encoding, but its decode call returns at once and each
sequence "samples" the next token of a fixed sentence. What a client then receives is the
most the gateway could pass on from a decoder as fast as a GPU and faster. The decode
call still releases the GIL (`time.sleep(step_ms)`, 0 by default), as llama.cpp's ctypes
calls do, so the event loop gets the interpreter between steps as it would in real use.

Clients stream chat completions over loopback with httpx (lines counted, no JSON parsed
but the last usage chunk): one stream, then eight at once; `--rounds` of each,
alternating. Reported: tokens/s per stream and in aggregate (completion tokens over the
time from the first content chunk to the last), median and best of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from models import MODELS
from processes import HOST, PYTHON, free_port, served

SETTINGS = """\
[server]
log_level = "info"

[[models]]
id = "instant"
provider = "llama_cpp"
format = "chat"
path = "{path}"
slots = 8
context_length = {context}
max_output_tokens = {tokens}
"""


def _serve(settings_path: Path, port: int, step_ms: float) -> None:
    """The server process: the gateway with `InstantEngine` for every llama model."""
    import msgspec

    from app.cli import run_server
    from app.settings import load_settings
    from pipelines.config import LlamaModelConfig, ModelConfig
    from pipelines.providers.base import Provider
    from pipelines.providers.factory import DefaultProviders
    from pipelines.providers.llama import LlamaProvider
    from pipelines.providers.llama.engine import Engine
    from pipelines.providers.llama.sequences import Seq

    pause = step_ms / 1000.0

    class InstantEngine(Engine):
        """Decodes nothing; each sequence's next token is the next of a fixed sentence."""

        def __init__(self, model: Any, **kwargs: Any) -> None:
            self._text = model.tokenize(b" The quick brown fox jumps over the lazy dog.", False, False)
            super().__init__(model, **kwargs)

        def _decode(self, n: int, seqs: list[Seq]) -> bool:
            time.sleep(pause)  # a ctypes call releases the GIL; so does this
            return True

        def _next_token(self, seq: Seq, out: int) -> int:
            token: int = self._text[seq.produced % len(self._text)]
            return token

    settings = load_settings(str(settings_path))
    settings = msgspec.structs.replace(settings, server=msgspec.structs.replace(settings.server, host=HOST, port=port))
    cache = Path(settings.server.cache_dir).expanduser()
    default = DefaultProviders(cache_dir=cache)

    def providers(config: ModelConfig) -> Provider:
        if isinstance(config, LlamaModelConfig):
            return LlamaProvider(config, cache_dir=cache, engine=InstantEngine)
        return default(config)

    run_server(settings, provider_factory=providers)


async def _stream(client: httpx.AsyncClient, url: str, tokens: int, index: int) -> dict[str, float]:
    body = {
        "model": "instant",
        "messages": [{"role": "user", "content": f"Tell me a story, number {index}."}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": tokens,
        "temperature": 0,
    }
    first = last = 0.0
    chunks = 0
    usage: dict[str, Any] = {}
    async with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            now = time.perf_counter()
            if '"usage":{' in line and '"choices":[]' in line:
                usage = json.loads(line[6:])["usage"]
                continue
            chunks += 1
            first = first or now
            last = now
    return {"tokens": float(usage.get("completion_tokens", 0)), "chunks": float(chunks), "first": first, "last": last}


async def _round(url: str, streams: int, tokens: int) -> dict[str, float]:
    limits = httpx.Limits(max_connections=streams + 1)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        results = await asyncio.gather(*(_stream(client, url, tokens, i) for i in range(streams)))
    total = sum(r["tokens"] for r in results)
    window = max(r["last"] for r in results) - min(r["first"] for r in results)
    per_stream = [r["tokens"] / (r["last"] - r["first"]) for r in results if r["last"] > r["first"]]
    return {
        "aggregate_tps": total / window if window > 0 else 0.0,
        "per_stream_tps": statistics.median(per_stream) if per_stream else 0.0,
        "tokens_per_chunk": total / max(1.0, sum(r["chunks"] for r in results)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=3000, help="completion tokens per stream")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--step-ms", type=float, default=0.0, help="seconds a decode call sleeps, in ms")
    parser.add_argument("--serve", nargs=2, metavar=("SETTINGS", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(Path(args.serve[0]), int(args.serve[1]), args.step_ms)
        return 0
    from models import model_file

    with tempfile.TemporaryDirectory(prefix="mia-ceiling-") as tmp:
        settings = Path(tmp) / "settings.toml"
        path = model_file("smollm2")
        assert MODELS["smollm2"][1] == "chat"
        settings.write_text(SETTINGS.format(path=path, context=args.tokens + 256, tokens=args.tokens))
        port = free_port()
        command = [PYTHON, __file__, "--serve", str(settings), str(port), "--step-ms", str(args.step_ms)]
        base = f"http://{HOST}:{port}"
        with served(command, Path(tmp) / "gateway.log", f"{base}/ready"):
            url = f"{base}/v1/chat/completions"
            asyncio.run(_round(url, 1, 200))  # warm-up: the model loads on first use
            rounds: dict[int, list[dict[str, float]]] = {1: [], 8: []}
            for _, streams in itertools.product(range(args.rounds), (1, 8)):
                rounds[streams].append(asyncio.run(_round(url, streams, args.tokens)))
    print(f"per-token ceiling, InstantEngine (decode sleeps {args.step_ms} ms), {args.tokens} tokens per stream")
    for streams, results in rounds.items():
        agg = [r["aggregate_tps"] for r in results]
        per = [r["per_stream_tps"] for r in results]
        print(
            f"  {streams} stream(s): aggregate {statistics.median(agg):,.0f} tokens/s (best {max(agg):,.0f}), "
            f"per stream {statistics.median(per):,.0f}, tokens per SSE chunk "
            f"{statistics.median(r['tokens_per_chunk'] for r in results):.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
