"""What httpx costs the relay: CPU per upstream request and per streamed chunk, in this
process, against bench/relay_upstream.py on loopback (the floor under `openai_http`).

    .venv/bin/python bench/httpx_cost.py            # about 10 s

- per request: a streamed request of one chunk, read to its end, one after another on an
  `httpx.AsyncClient` like the provider's (`max_keepalive_connections=64`), with 1 and
  with 32 connections open in its pool (the provider's pool after 32 concurrent streams);
- per further chunk: a 256-chunk stream read with `aiter_bytes()` (what the provider
  reads) and with `aiter_lines()` (what it read before), less the one-chunk request, over
  255 chunks (the upstream sends each chunk in a write of its own).

CPU is `time.process_time()` of this process over `--requests` requests (median of
`--rounds`), so the upstream's own work is not in it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from processes import HOST, free_port, served
from relay import bare_upstream_command

CHUNKS = 256


async def _read(client: httpx.AsyncClient, url: str, body: bytes, lines: bool) -> None:
    async with client.stream("POST", url, content=body) as response:
        chunks = response.aiter_lines() if lines else response.aiter_bytes()
        async for _ in chunks:
            pass


async def _cpu(url: str, requests: int, *, pooled: int, chunks: int, lines: bool = False) -> float:
    """CPU seconds per request of `requests` sequential requests of `chunks` chunks."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    body = b'{"model":"bare","messages":[],"max_tokens":%d,"stream":true}' % chunks
    async with httpx.AsyncClient(limits=limits) as client:
        one = b'{"model":"bare","messages":[],"max_tokens":1,"stream":true}'
        await asyncio.gather(*(_read(client, url, one, False) for _ in range(pooled)))
        started = time.process_time()
        for _ in range(requests):
            await _read(client, url, body, lines)
        return (time.process_time() - started) / requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    url = f"http://{HOST}:{port}/v1/chat/completions"
    cases = {  # name: (connections in the pool, chunks per request, read by lines)
        "one_chunk": (1, 1, False),
        "one_chunk_32": (32, 1, False),
        "bytes": (1, CHUNKS, False),
        "lines": (1, CHUNKS, True),
    }
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    with tempfile.TemporaryDirectory(prefix="mia-httpx-") as tmp:
        log = Path(tmp) / "bare.log"
        with served(bare_upstream_command(port), log, f"http://{HOST}:{port}/v1/models", timeout=30):
            for _ in range(args.rounds):
                for name, (pooled, chunks, lines) in cases.items():
                    requests = args.requests if chunks == 1 else max(1, args.requests // 10)
                    cpu[name].append(asyncio.run(_cpu(url, requests, pooled=pooled, chunks=chunks, lines=lines)))
    median = {name: statistics.median(values) * 1e6 for name, values in cpu.items()}
    print(f"httpx {httpx.__version__}, CPU of this process (µs), median of {args.rounds} rounds:")
    print(f"  per request, 1 connection in the pool:    {median['one_chunk']:8.0f}")
    print(f"  per request, 32 connections in the pool:  {median['one_chunk_32']:8.0f}")
    for name in ("bytes", "lines"):
        per_chunk = (median[name] - median["one_chunk"]) / (CHUNKS - 1)
        print(f"  per further chunk, aiter_{name + ':':<22}{per_chunk:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
