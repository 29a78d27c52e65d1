"""The LLM half of bench/compare.py: the same GGUF and prompts through llama-cpp-python
directly, llama-cpp-python's server (interrupting and queued), and the gateway at
`slots = 4` and `slots = 1`, each at every concurrency level, streamed through the openai
SDK's AsyncOpenAI (llama.cpp's own server, beside the gateway: bench/peer.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import openai
from openai._constants import DEFAULT_CONNECTION_LIMITS
from processes import HOST, PYTHON, REPO, free_port, serve_gateway, served
from stats import Request, summarise
from workload import prompt_for, rounds_for

__all__ = [
    "gateway_settings",
    "llm_phase",
    "measure_server",
    "prompt_cache",
    "run_clients",
    "run_direct",
    "stream_requests",
]


def run_direct(path: Path, args: argparse.Namespace, kind: str, deadline: float) -> dict[str, Any]:
    """bench/direct.py in a child process (llama.cpp's threads and memory leave with it)."""
    spec = {
        "path": str(path),
        "threads": args.threads,
        "kind": kind,
        "max_tokens": args.max_tokens,
        "clients": args.clients,
        "rounds": args.rounds,
    }
    proc = subprocess.run(
        [PYTHON, str(REPO / "bench" / "direct.py"), json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=max(10.0, deadline - time.monotonic()),
        cwd=REPO,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"direct worker failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


async def run_clients(
    base_url: str, model: str, kind: str, n: int, rounds: int, max_tokens: int, extra: dict[str, Any]
) -> dict[str, Any]:
    """`n` clients, each sending `rounds` streamed requests one after the other: their summary."""
    return summarise(*await stream_requests(base_url, model, kind, n, rounds, max_tokens, extra))


async def stream_requests(
    base_url: str, model: str, kind: str, n: int, rounds: int, max_tokens: int, extra: dict[str, Any]
) -> tuple[list[Request], float]:
    """`n` clients, each sending `rounds` streamed requests one after the other: the
    requests and the wall time they took."""
    limits = type(DEFAULT_CONNECTION_LIMITS)(max_connections=64, max_keepalive_connections=64)
    http = openai.DefaultAsyncHttpxClient(limits=limits, timeout=300.0)
    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, http_client=http)
    requests: list[Request] = []

    async def one(text: str, req: Request) -> None:
        if kind == "chat":
            stream = await client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": text}],
                max_tokens=max_tokens,
                temperature=0.0,
                stream=True,
                extra_body=extra,
            )
            async for chunk in stream:
                if chunk.choices:
                    if chunk.choices[0].delta.content:
                        req.stamps.append(time.perf_counter())
                    req.finish = chunk.choices[0].finish_reason or req.finish
        else:
            completion = await client.completions.create(
                model=model, prompt=text, max_tokens=max_tokens, temperature=0.0, stream=True, extra_body=extra
            )
            async for part in completion:
                if part.choices:
                    if part.choices[0].text:
                        req.stamps.append(time.perf_counter())
                    req.finish = part.choices[0].finish_reason or req.finish

    async def client_loop(i: int) -> None:
        for round_ in range(rounds):
            req = Request(sent=time.perf_counter())
            requests.append(req)
            try:
                await one(prompt_for(kind, i, round_, n), req)
            except Exception as exc:
                req.error = f"{type(exc).__name__}: {str(exc)[:200]}"

    try:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(i) for i in range(n)))
        return requests, time.perf_counter() - start
    finally:
        await client.close()


def measure_server(
    base_url: str, model: str, kind: str, args: argparse.Namespace, extra: dict[str, Any], deadline: float
) -> dict[str, Any]:
    """A warm-up request, then every concurrency level, within the run's deadline."""

    async def all_levels() -> dict[str, Any]:
        await run_clients(base_url, model, kind, 1, 1, args.max_tokens, extra)  # warm-up
        out = {}
        for n in args.clients:
            out[str(n)] = await run_clients(
                base_url, model, kind, n, rounds_for(n, args.rounds), args.max_tokens, extra
            )
        return out

    async def bounded() -> dict[str, Any]:
        return await asyncio.wait_for(all_levels(), timeout=max(10.0, deadline - time.monotonic()))

    return asyncio.run(bounded())


def gateway_settings(path: Path, args: argparse.Namespace, slots: int) -> str:
    return textwrap.dedent(
        f"""\
        [server]
        request_timeout = 600
        queue_size = 64

        [[models]]
        id = "bench"
        provider = "llama_cpp"
        format = "chat"
        path = "{path}"
        context_length = 2048
        threads = {args.threads}
        slots = {slots}
        max_output_tokens = 4096
        """
    )


def scrape(base_url: str, name: str) -> float:
    """The sum of the gateway's `name` series for the model "bench"."""
    body = httpx.get(f"{base_url}/metrics", timeout=10).text
    return sum(float(m.group(1)) for m in re.finditer(rf'^{name}{{model="bench"[^}}]*}} (\S+)$', body, re.MULTILINE))


def llm_phase(
    args: argparse.Namespace, path: Path, kind: str, tmp: Path, deadline: float, measured: dict[str, Any]
) -> dict[str, Any]:
    """Every system at every level, but those already `measured` (bench/peer.py's gateway)."""
    results: dict[str, Any] = dict(measured)
    # llama-cpp-python's server answers /v1/completions for raw text; the gateway serves
    # chat only, and renders a base model's single user turn as that same raw text.
    if "direct" not in args.skip:
        print("direct llama-cpp-python ...", flush=True)
        results["direct"] = run_direct(path, args, kind, deadline)
    # Its defaults: a new request interrupts the one running (`interrupt_requests`); the
    # "queued" run turns that off, so requests wait their turn instead of being cut off.
    for name, extra_args in (("llama-server", []), ("llama-server-queued", ["--interrupt_requests", "False"])):
        if name in args.skip:
            continue
        print(f"llama-cpp-python server ({name}) ...", flush=True)
        port = free_port()
        cmd = [PYTHON, "-m", "llama_cpp.server", "--model", str(path), "--n_ctx", "2048", *extra_args]
        cmd += ["--n_threads", str(args.threads), "--host", HOST, "--port", str(port), "--model_alias", "bench"]
        base = f"http://{HOST}:{port}/v1"
        with served(cmd, tmp / f"{name}.log", f"{base}/models"):
            # Its default sampling differs from a direct call (repeat penalty): ask for none.
            results[name] = measure_server(base, "bench", kind, args, {"repeat_penalty": 1.0}, deadline)
    for slots in (4, 1):
        name = f"gateway-slots{slots}"
        if name in args.skip or "gateway" in args.skip or name in results:
            continue
        print(f"gateway, slots = {slots} ...", flush=True)
        config = tmp / f"{name}.toml"
        config.write_text(gateway_settings(path, args, slots))
        with serve_gateway(config, tmp / f"{name}.log") as gw:
            results[name] = measure_server(gw.api_url, "bench", "chat", args, {}, deadline)
            results[name]["prompt_cache"] = prompt_cache(gw.base_url)
    return results


def prompt_cache(base_url: str) -> dict[str, float]:
    """The gateway's prompt-cache counters for the model "bench"."""
    return {
        "hit_tokens": scrape(base_url, "mia_prompt_cache_hit_tokens_total"),
        "processed_tokens": scrape(base_url, "mia_prompt_processed_tokens_total"),
        "prompt_tokens": scrape(base_url, "mia_prompt_tokens_total"),
    }
