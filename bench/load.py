"""Load a local mia-gateway with concurrent streaming chat completions (the openai SDK).

    .venv/bin/python bench/load.py --base-url http://127.0.0.1:8000/v1 --model smollm2 \\
        --clients 8 --requests 32 --max-tokens 64 --timeout 120 [--json]

N clients (`--clients`) share `--requests` streaming requests; each request is timed
from sending to its first token (TTFT) and to its last byte (latency). Reported:
completed, rejected (429: admission control said no), failed (anything else, including
requests cut by `--timeout`), p50/p95/p99 of latency and TTFT, output tokens/s.

Bounded on purpose: loopback base URLs only (it is a local benchmark, not a load
generator for other people's servers), at most 256 clients and 10,000 requests, and
`--timeout` caps the whole run's wall time (at most 3,600 s).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import openai
from openai._constants import DEFAULT_CONNECTION_LIMITS
from stats import summary

MAX_CLIENTS = 256
MAX_REQUESTS = 10_000
MAX_SECONDS = 3600.0
TOPICS = (
    "a lighthouse",
    "a robot",
    "the sea",
    "a mountain",
    "a library",
    "a garden",
    "a train",
    "a storm",
    "a city at night",
    "an old map",
)


def is_loopback_url(url: str) -> bool:
    """True for http(s) URLs whose host is `localhost` or a loopback address (no DNS)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    host = parts.hostname
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Outcome:
    kind: str  # completed | rejected | failed
    latency: float
    ttft: float | None = None
    tokens: int = 0
    detail: str = ""


@dataclass
class Report:
    config: dict[str, Any]
    wall_seconds: float = 0.0
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(1 for o in self.outcomes if o.kind == kind)

    def as_dict(self) -> dict[str, Any]:
        done = [o for o in self.outcomes if o.kind == "completed"]
        tokens = sum(o.tokens for o in done)
        errors: dict[str, int] = {}
        for o in self.outcomes:
            if o.kind != "completed":
                errors[o.detail] = errors.get(o.detail, 0) + 1
        return {
            "config": self.config,
            "requests": len(self.outcomes),
            "completed": len(done),
            "rejected": self.count("rejected"),
            "failed": self.count("failed"),
            "wall_seconds": round(self.wall_seconds, 3),
            "requests_per_second": round(len(done) / self.wall_seconds, 3) if self.wall_seconds else None,
            "output_tokens": tokens,
            "output_tokens_per_second": round(tokens / self.wall_seconds, 1) if self.wall_seconds else None,
            "latency_seconds": summary([o.latency for o in done]),
            "ttft_seconds": summary([o.ttft for o in done if o.ttft is not None]),
            "errors": dict(sorted(errors.items(), key=lambda kv: -kv[1])[:10]),
        }


async def one_request(client: openai.AsyncOpenAI, args: argparse.Namespace, i: int) -> Outcome:
    topic = TOPICS[i % len(TOPICS)]
    messages = [{"role": "user", "content": f"Request {i}: write a short story about {topic}."}]
    sent = time.perf_counter()
    ttft = None
    tokens = 0
    try:
        stream = await client.chat.completions.create(
            model=args.model,
            messages=messages,  # type: ignore[arg-type]
            max_tokens=args.max_tokens,
            temperature=args.temperature,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in stream:
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
            if ttft is None and chunk.choices:
                delta = chunk.choices[0].delta
                extra = delta.model_extra or {}
                if delta.content or extra.get("reasoning_content") or extra.get("reasoning") or delta.tool_calls:
                    ttft = time.perf_counter() - sent
    except openai.RateLimitError:
        return Outcome("rejected", time.perf_counter() - sent, detail="429 rate_limit_exceeded")
    except openai.APIStatusError as exc:
        code = exc.body.get("code") if isinstance(exc.body, dict) else None
        return Outcome("failed", time.perf_counter() - sent, detail=f"{exc.status_code} {code}")
    except openai.APIError as exc:
        return Outcome("failed", time.perf_counter() - sent, detail=type(exc).__name__)
    return Outcome("completed", time.perf_counter() - sent, ttft=ttft, tokens=tokens)


async def run(args: argparse.Namespace) -> Report:
    report = Report(
        config={
            "base_url": args.base_url,
            "model": args.model,
            "clients": args.clients,
            "requests": args.requests,
            "max_tokens": args.max_tokens,
            "temperature": args.temperature,
            "timeout": args.timeout,
        }
    )
    limits = type(DEFAULT_CONNECTION_LIMITS)(max_connections=args.clients, max_keepalive_connections=args.clients)
    client = openai.AsyncOpenAI(
        base_url=args.base_url,
        api_key=args.api_key,
        max_retries=0,
        timeout=args.timeout,
        http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=args.timeout),
    )
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < args.requests:
            i = next_index
            next_index += 1
            report.outcomes.append(await one_request(client, args, i))

    started = time.perf_counter()
    workers = [asyncio.create_task(worker()) for _ in range(min(args.clients, args.requests))]
    try:
        done, pending = await asyncio.wait(workers, timeout=args.timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()
    finally:
        report.wall_seconds = time.perf_counter() - started
        await client.close()
    cut = args.requests - len(report.outcomes)
    report.outcomes += [Outcome("failed", args.timeout, detail="cut by --timeout") for _ in range(cut)]
    return report


def table(d: dict[str, Any]) -> str:
    c = d["config"]
    lines = [
        f"mia-gateway load: {c['model']} at {c['base_url']}",
        f"  {c['clients']} clients, {c['requests']} streaming requests, max_tokens {c['max_tokens']}, "
        f"temperature {c['temperature']}",
        "",
        f"  completed {d['completed']:>6}   rejected (429) {d['rejected']:>6}   failed {d['failed']:>6}",
        f"  wall {d['wall_seconds']:.2f} s   {d['requests_per_second'] or 0:.2f} req/s   "
        f"{d['output_tokens']} output tokens, {d['output_tokens_per_second'] or 0:.1f} tokens/s",
        "",
        f"  {'seconds':<10}{'p50':>10}{'p95':>10}{'p99':>10}{'mean':>10}{'max':>10}",
    ]
    for name, key in (("latency", "latency_seconds"), ("TTFT", "ttft_seconds")):
        s = d[key]
        cells = "".join(
            f"{'-' if s[k] is None else format(s[k], '.3f'):>10}" for k in ("p50", "p95", "p99", "mean", "max")
        )
        lines.append(f"  {name:<10}{cells}")
    if d["errors"]:
        lines += ["", "  not completed:"] + [f"    {n:>5} x {what}" for what, n in d["errors"].items()]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", default="http://127.0.0.1:8000/v1", help="the gateway's /v1 URL (loopback only)")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--clients", type=int, default=8, help=f"concurrent clients (1-{MAX_CLIENTS})")
    p.add_argument("--requests", type=int, default=32, help=f"requests in total (1-{MAX_REQUESTS})")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--timeout", type=float, default=120.0, help=f"wall-time budget of the run, s (max {MAX_SECONDS:g})")
    p.add_argument("--api-key", default="unused", help="sent as Bearer (only needed with [server] api_keys)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    args = p.parse_args(argv)
    if not is_loopback_url(args.base_url):
        p.error(f"refusing {args.base_url!r}: only loopback base URLs (localhost, 127.0.0.0/8, [::1])")
    if not 1 <= args.clients <= MAX_CLIENTS:
        p.error(f"--clients must be 1-{MAX_CLIENTS}")
    if not 1 <= args.requests <= MAX_REQUESTS:
        p.error(f"--requests must be 1-{MAX_REQUESTS}")
    if not 0 < args.timeout <= MAX_SECONDS:
        p.error(f"--timeout must be in (0, {MAX_SECONDS:g}]")
    if args.max_tokens < 1:
        p.error("--max-tokens must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = asyncio.run(run(args)).as_dict()
    print(json.dumps(report, indent=2) if args.json else table(report))
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
