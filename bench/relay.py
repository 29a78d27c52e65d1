"""What relaying an upstream costs: the gateway in front of a fast upstream against the same
upstream called directly, in one run, on loopback only.

    .venv/bin/python bench/relay.py                  # about 1-1.5 minutes
    .venv/bin/python bench/relay.py --rounds 1 --requests 8 --chunks 32    # a smoke run

Two upstreams, each asked directly and through a `mia-gateway serve` whose models are
`openai_http` models pointing at them:

- `bare`: bench/relay_upstream.py, a raw ASGI app under uvicorn (httptools) that streams
  `--chunks` content chunks as fast as it can (events encoded once, a loop turn between two);
- `stub`: another mia-gateway serving a stub model (`stub_words` = `--chunks`).

At each concurrency level (`--levels`, default 1 and 32 streams), `--requests` streamed
chat completions of `--chunks` content chunks each per round, shared among the streams;
`--rounds` rounds, direct and gateway alternating (which goes first alternates too).
Clients: httpx `AsyncClient` streams read with `aiter_lines()` (no JSON parsed; a content
chunk is a `data:` line with non-empty `"content"`), one keep-alive connection per stream,
opened by a warm-up before the first round; cheaper than the openai SDK, so that the
client's CPU does not decide the result.

Reported per upstream, level and system: time to first content chunk (p50/p99 over every
request of every round, ms), chunk throughput (content chunks of the round over its wall
time, median of the rounds), and the CPU each process spent per content chunk (µs, from
/proc; `client` is this process); then added TTFT (gateway minus direct p50) and the
throughput ratio (median of the rounds' gateway/direct ratios). Targets (issue 15): added
TTFT p50 < 1 ms and throughput >= 0.9x direct at 32 streams. `--json FILE` writes it all.

`--baseline DIR` adds a third system: the same relaying gateway run from the sources in DIR
(`git archive COMMIT | tar -x -C DIR`) with this venv, for a before/after in one run.

The gateway's process id is printed at start: `py-spy record --pid PID` profiles the relay.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from processes import HOST, PYTHON, REPO, cpu_seconds, free_port, gateway_command, serve_gateway, served
from report import machine, uptime
from stats import ms, percentile

TARGETS = ("bare", "stub")
MAX_LEVEL = 64
"""An `openai_http` model's slots are at most 64: the gateway would queue beyond."""

STUB_UPSTREAM = """\
[[models]]
id = "stub-chat"
provider = "stub"
format = "chat"
max_output_tokens = 4096
stub_words = {chunks}
"""

RELAY_GATEWAY = """\
[[models]]
id = "relay-bare"
provider = "openai_http"
format = "chat"
slots = 64
max_output_tokens = 4096
probe_seconds = 0
upstreams = [{{ base_url = "{bare}", model = "bare" }}]

[[models]]
id = "relay-stub"
provider = "openai_http"
format = "chat"
slots = 64
max_output_tokens = 4096
probe_seconds = 0
upstreams = [{{ base_url = "{stub}", model = "stub-chat" }}]
"""


@dataclass
class Stream:
    """One streamed request: when it was sent, when its first content chunk came, how many came."""

    sent: float
    first: float | None = None
    chunks: int = 0
    error: str | None = None


@dataclass
class Round:
    wall: float
    streams: list[Stream]
    cpu: dict[str, float]
    """CPU seconds each process spent during the round."""

    @property
    def chunks(self) -> int:
        return sum(s.chunks for s in self.streams)


@dataclass
class Cell:
    """Every round of one (upstream, level, system)."""

    rounds: list[Round] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        streams = [s for r in self.rounds for s in r.streams]
        ttft = [s.first - s.sent for s in streams if s.first is not None]
        chunks = sum(r.chunks for r in self.rounds)
        cpu: dict[str, float] = {}
        for r in self.rounds:
            for name, seconds in r.cpu.items():
                cpu[name] = cpu.get(name, 0.0) + seconds
        return {
            "requests": len(streams),
            "errors": sum(1 for s in streams if s.error),
            "error_detail": sorted({s.error for s in streams if s.error})[:3],
            "ttft_p50_ms": ms(percentile(ttft, 50)),
            "ttft_p99_ms": ms(percentile(ttft, 99)),
            "chunks_per_s": [r.chunks / r.wall for r in self.rounds],
            "chunks_per_s_median": statistics.median(r.chunks / r.wall for r in self.rounds) if self.rounds else None,
            "cpu_us_per_chunk": {k: round(v / chunks * 1e6, 1) for k, v in cpu.items()} if chunks else {},
        }


def _is_content(line: str) -> bool:
    return '"content":"' in line and '"content":""' not in line


class Client:
    """Streams to one system (`base_url`, `model`) over keep-alive connections."""

    def __init__(self, base_url: str, model: str, streams: int) -> None:
        self.url = f"{base_url}/chat/completions"
        self.model = model
        limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams)
        self.http = httpx.AsyncClient(timeout=120, limits=limits)

    def body(self, chunks: int) -> bytes:
        return json.dumps(
            {
                "model": self.model,
                "messages": [{"role": "user", "content": "Relay this, please."}],
                "max_tokens": chunks,
                "temperature": 0,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        ).encode()

    async def one(self, body: bytes, chunks: int) -> Stream:
        out = Stream(sent=time.perf_counter())
        try:
            async with self.http.stream(
                "POST", self.url, content=body, headers={"content-type": "application/json"}
            ) as response:
                if response.status_code != 200:
                    out.error = f"HTTP {response.status_code}: {(await response.aread())[:120]!r}"
                    return out
                async for line in response.aiter_lines():
                    if _is_content(line):
                        if out.first is None:
                            out.first = time.perf_counter()
                        out.chunks += 1
        except httpx.HTTPError as exc:
            out.error = f"{type(exc).__name__}: {exc}"
            return out
        if out.chunks != chunks:
            out.error = f"{out.chunks} content chunks, not {chunks}"
        return out

    async def run(self, streams: int, requests: int, chunks: int) -> tuple[float, list[Stream]]:
        """`requests` requests over `streams` concurrent streams; (wall seconds, each request)."""
        body = self.body(chunks)
        results: list[Stream] = []
        left = iter(range(requests))

        async def worker() -> None:
            for _ in left:
                results.append(await self.one(body, chunks))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(min(streams, requests))))
        return time.perf_counter() - started, results

    async def aclose(self) -> None:
        await self.http.aclose()


async def measure(
    clients: dict[tuple[str, str], Client],
    pids: dict[str, int],
    args: argparse.Namespace,
    deadline: float,
    say: Callable[[str], None],
) -> tuple[dict[tuple[str, int, str], Cell], int]:
    """Alternating rounds of every (upstream, level, system); the rounds done."""
    for client in clients.values():  # open every connection, load the gateway's models
        await client.run(max(args.levels), max(args.levels), min(args.chunks, 8))
    cells: dict[tuple[str, int, str], Cell] = {}
    done = 0
    systems = sorted({system for _, system in clients}, key=lambda s: (s != "direct", s))
    for round_ in range(args.rounds):
        if time.monotonic() > deadline:
            say(f"deadline reached: {done} of {args.rounds} rounds run")
            break
        for level in args.levels:
            for target in args.targets:
                turn = round_ % len(systems)
                for system in systems[turn:] + systems[:turn]:
                    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                    client_before = time.process_time()
                    wall, streams = await clients[target, system].run(level, args.requests, args.chunks)
                    cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
                    cpu["client"] = time.process_time() - client_before
                    cells.setdefault((target, level, system), Cell()).rounds.append(Round(wall, streams, cpu))
                    rate = sum(s.chunks for s in streams) / wall
                    say(f"round {round_ + 1}, {target:<4} {level:>2} stream(s), {system:<8}: {rate:>9,.0f} chunks/s")
        done += 1
    return cells, done


def bare_upstream_command(port: int) -> list[str]:
    """bench/relay_upstream.py under uvicorn, with the loop and HTTP parser the gateway uses."""
    flags = f"--host {HOST} --port {port} --loop asyncio --http httptools --lifespan off --no-access-log"
    return [PYTHON, "-m", "uvicorn", "relay_upstream:app", "--app-dir", str(REPO / "bench"), *flags.split()]


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def report(results: dict[str, Any]) -> str:
    lines = [
        f"relay: {results['chunks']} content chunks per request, {results['requests']} requests per level "
        f"and round, {results['rounds_done']} round(s); httpx clients (aiter_lines)",
        f"  {results['uptime_before']}",
        "",
        f"  {'upstream':<9}{'streams':>7}  {'system':<8}{'TTFT p50':>9}{'p99':>8}{'chunks/s':>10}"
        f"   CPU µs per chunk (upstream, gateway, client)",
    ]
    for row in results["cells"]:
        cpu = row["cpu_us_per_chunk"]
        relaying = row["system"] if row["system"] != "direct" else "gateway"
        cells = ", ".join(_fmt(cpu.get(k), ".0f") for k in (f"upstream_{row['upstream']}", relaying, "client"))
        errors = f"   {row['errors']} errors: {row['error_detail']}" if row["errors"] else ""
        lines.append(
            f"  {row['upstream']:<9}{row['streams']:>7}  {row['system']:<8}{_fmt(row['ttft_p50_ms']):>9}"
            f"{_fmt(row['ttft_p99_ms']):>8}{_fmt(row['chunks_per_s_median'], ',.0f'):>10}   {cells}{errors}"
        )
    lines += ["", "  relayed against direct (targets at 32 streams: added TTFT p50 < 1 ms, throughput >= 0.9x):"]
    for v in results["verdicts"]:
        lines.append(
            f"  {v['upstream']:<9}{v['streams']:>7}  {v['system']:<9}added TTFT p50 {_fmt(v['added_ttft_p50_ms'])} ms, "
            f"throughput {_fmt(v['throughput_ratio'])}x"
        )
    lines.append(f"  {results['uptime_after']}")
    return "\n".join(lines)


def _verdicts(cells: dict[tuple[str, int, str], Cell]) -> list[dict[str, Any]]:
    """Each relaying system against direct, per upstream and level."""
    out = []
    for (target, level, system), relayed in sorted(cells.items()):
        direct = cells.get((target, level, "direct"))
        if system == "direct" or direct is None:
            continue
        d, g = direct.summary()["ttft_p50_ms"], relayed.summary()["ttft_p50_ms"]
        ratios = [
            (r.chunks / r.wall) / (dr.chunks / dr.wall)
            for r, dr in zip(relayed.rounds, direct.rounds, strict=False)
            if dr.chunks
        ]
        out.append(
            {
                "upstream": target,
                "streams": level,
                "system": system,
                "added_ttft_p50_ms": g - d if g is not None and d is not None else None,
                "throughput_ratio": statistics.median(ratios) if ratios else None,
                "throughput_ratios": ratios,
            }
        )
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", default="1,32", help=f"concurrent streams (comma-separated, 1-{MAX_LEVEL})")
    p.add_argument("--targets", default=",".join(TARGETS), help="upstreams: bare, stub or both")
    p.add_argument("--rounds", type=int, default=5, help="rounds of every upstream, level and system (1-20)")
    p.add_argument("--requests", type=int, default=64, help="requests per level and round (1-2000)")
    p.add_argument("--chunks", type=int, default=256, help="content chunks per request (1-4096)")
    p.add_argument("--deadline", type=float, default=300, help="seconds; no new round starts after (max 1800)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--baseline", type=Path, help="also relay through a gateway run from the sources in this folder")
    args = p.parse_args(argv)
    try:
        args.levels = sorted({int(x) for x in args.levels.split(",")})
    except ValueError:
        p.error("--levels: comma-separated integers")
    asked = set(args.targets.split(","))
    args.targets = tuple(t for t in TARGETS if t in asked)
    if not args.targets or not asked <= set(TARGETS):
        p.error(f"--targets: one or more of {', '.join(TARGETS)}")
    if not all(1 <= level <= MAX_LEVEL for level in args.levels):
        p.error(f"--levels must be 1-{MAX_LEVEL}")
    if not 1 <= args.rounds <= 20 or not 1 <= args.requests <= 2000 or not 1 <= args.chunks <= 4096:
        p.error("--rounds 1-20, --requests 1-2000, --chunks 1-4096")
    if not 0 < args.deadline <= 1800:
        p.error("--deadline must be in (0, 1800]")
    if args.baseline is not None and not (args.baseline / "app" / "cli.py").is_file():
        p.error(f"--baseline {args.baseline}: no app/cli.py there")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    results: dict[str, Any] = {
        "machine": machine(),
        "uptime_before": uptime(),
        "chunks": args.chunks,
        "requests": args.requests,
        "levels": args.levels,
    }
    with tempfile.TemporaryDirectory(prefix="mia-relay-") as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        port = free_port()
        bare = stack.enter_context(
            served(bare_upstream_command(port), tmp / "bare.log", f"http://{HOST}:{port}/v1/models", timeout=30)
        )
        stub_config = tmp / "stub.toml"
        stub_config.write_text(STUB_UPSTREAM.format(chunks=args.chunks))
        stub = stack.enter_context(serve_gateway(stub_config, tmp / "stub.log"))
        bare_url = f"http://{HOST}:{port}/v1"
        relay_config = tmp / "relay.toml"
        relay_config.write_text(RELAY_GATEWAY.format(bare=bare_url, stub=stub.api_url))
        gateway = stack.enter_context(serve_gateway(relay_config, tmp / "relay.log"))
        pids = {"upstream_bare": bare.pid, "upstream_stub": stub.proc.pid, "gateway": gateway.proc.pid}
        relays = {"gateway": gateway.api_url}
        if args.baseline is not None:
            # its sources come first on the path: the venv's editable finder only answers after
            baseline_port = free_port()
            command = ["env", f"PYTHONPATH={args.baseline.resolve()}", *gateway_command(relay_config, baseline_port)]
            ready = f"http://{HOST}:{baseline_port}/ready"
            pids["baseline"] = stack.enter_context(served(command, tmp / "baseline.log", ready)).pid
            relays["baseline"] = f"http://{HOST}:{baseline_port}/v1"
        say(f"processes: {pids}")
        most = max(args.levels)
        clients = {
            ("bare", "direct"): Client(bare_url, "bare", most),
            ("stub", "direct"): Client(stub.api_url, "stub-chat", most),
        }
        for system, url in relays.items():
            clients["bare", system] = Client(url, "relay-bare", most)
            clients["stub", system] = Client(url, "relay-stub", most)
        clients = {k: v for k, v in clients.items() if k[0] in args.targets}

        async def run() -> tuple[dict[tuple[str, int, str], Cell], int]:
            try:
                return await measure(clients, pids, args, started + args.deadline, say)
            finally:
                for client in clients.values():
                    await client.aclose()

        cells, results["rounds_done"] = asyncio.run(run())
    results["uptime_after"] = uptime()
    results["cells"] = [
        {"upstream": target, "streams": level, "system": system, **cell.summary()}
        for (target, level, system), cell in sorted(cells.items())
    ]
    results["verdicts"] = _verdicts(cells)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if any(row["errors"] for row in results["cells"]) else 0


if __name__ == "__main__":
    sys.exit(main())
