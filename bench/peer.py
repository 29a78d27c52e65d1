"""llama.cpp's own server and batched decode beside the gateway, for bench/compare.py.

`llama-server` and `llama-batched-bench` are built by scripts/build_llama_server.sh from
the llama.cpp that the installed llama-cpp-python vendors, into
~/.cache/mia-gateway/llama-server-<version>/; where they are not built, these phases are
skipped with a line that says so.

- The peer: `llama-server -np 4 -c 8192 -t THREADS` and the gateway (`slots = 4`) are both
  started, then measured in alternating rounds (the systems' order rotates by round),
  every concurrency level in each round: on a shared machine all see the same load. Each
  system's figures merge its rounds; each round's gateway/server ratios are kept too.
  `--peer-variant NAME:KEY=VALUE` adds a gateway started with that environment (an
  OpenMP setting, say) to the same rounds; a lower-case KEY is a passport key instead
  (`fa:flash_attention=true`). Beside tokens/s, each server's CPU time per
  streamed token (its process, all threads, from /proc). `--peer-server-env KEY=VALUE`
  starts llama-server with that environment: as shipped, libgomp's threads spin 300,000
  times at each barrier, which collapses its decode beside other busy processes, where the
  gateway sets `GOMP_SPINCOUNT=3000` for its llama.cpp (docs/performance.md).
- The ceiling: `llama-batched-bench -npp 32 -ntg 64 -npl 1,4,8`, llama.cpp decoding that
  many sequences in one batch with no server around it (its S_TG tokens/s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from llm_systems import gateway_settings, prompt_cache, stream_requests
from models import CACHE_DIR
from processes import HOST, cpu_seconds, free_port, serve_gateway, served
from stats import Request, summarise
from workload import rounds_for

__all__ = ["SERVER", "batched_bench", "peer_dir", "peer_phase"]

SERVER = "llama.cpp-server"
"""The peer's name in the report (llama-cpp-python's server is "llama-server")."""

_FLASH_ATTN = ("auto", "on", "off")


def peer_dir() -> Path:
    """Where scripts/build_llama_server.sh puts the binaries for the installed llama-cpp-python."""
    return CACHE_DIR / f"llama-server-{importlib.metadata.version('llama-cpp-python')}"


def _binary(name: str) -> Path | None:
    path = peer_dir() / name
    if path.is_file():
        return path
    print(f"{name}: skipped, not built (bash scripts/build_llama_server.sh builds it into {peer_dir()})", flush=True)
    return None


def batched_bench(path: Path, args: argparse.Namespace, deadline: float) -> dict[str, Any] | None:
    """llama.cpp's batched decode at 1, 4 and 8 sequences: {sequences: {decode_tps, ...}}."""
    binary = _binary("llama-batched-bench")
    if binary is None:
        return None
    cmd = [str(binary), "-m", str(path), "-c", "8192", "-b", "2048", "-ub", "512", "-t", str(args.threads)]
    cmd += ["-npp", "32", "-ntg", "64", "-npl", "1,4,8", "-fa", args.peer_flash_attn, "--output-format", "jsonl"]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=max(10.0, deadline - time.monotonic()), check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"llama-batched-bench failed ({proc.returncode}): {proc.stderr[-2000:]}")
    out: dict[str, Any] = {"command": " ".join(cmd)}
    for line in (proc.stdout + proc.stderr).splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            out[str(row["pl"])] = {"decode_tps": row["speed_tg"], "prompt_tps": row["speed_pp"], "n_kv": row["n_kv"]}
    return out


def peer_phase(args: argparse.Namespace, path: Path, kind: str, tmp: Path, deadline: float) -> dict[str, Any] | None:
    """The gateway (`slots = 4`, and each `--peer-variant`) and llama-server in alternating
    rounds: {system: {clients: summary}, "rounds": [{system: {clients: ratio to the
    server}}]}; None when the server is not built."""
    binary = _binary("llama-server")
    if binary is None:
        return None
    print(f"gateway (slots = 4) and {SERVER}, alternating rounds ...", flush=True)
    port = free_port()
    base = f"http://{HOST}:{port}"
    cmd = [str(binary), "-m", str(path), "-np", "4", "-c", "8192", "-t", str(args.threads), "-tb", str(args.threads)]
    cmd += ["-fa", args.peer_flash_attn, "--host", HOST, "--port", str(port), "--alias", "bench", "--no-webui"]
    config = tmp / "gateway-peer.toml"
    config.write_text(gateway_settings(path, args, 4))
    with contextlib.ExitStack() as stack:
        with _environment(dict(a.split("=", 1) for a in args.peer_server_env)):
            server = stack.enter_context(served(cmd, tmp / "llama.cpp-server.log", f"{base}/health"))
        urls: dict[str, tuple[str, str, int]] = {}
        gateways = {}
        for name, env, keys in [("gateway-slots4", {}, ""), *(_variant(v) for v in args.peer_variant)]:
            settings = config
            if keys:
                settings = tmp / f"{name}.toml"
                settings.write_text(config.read_text() + keys)
            with _environment(env):  # the gateway process inherits it when it starts
                gw = stack.enter_context(serve_gateway(settings, tmp / f"{name}.log"))
            urls[name] = (gw.api_url, "chat", gw.proc.pid)
            gateways[name] = gw
        urls[SERVER] = (f"{base}/v1", kind, server.pid)
        # llama-server's default sampling has penalties off (repeat_penalty 1.0), as the gateway's.
        merged = asyncio.run(_alternate(urls, args, deadline, lambda: batched_bench(path, args, deadline)))
        results: dict[str, Any] = {name: {} for name in urls}
        for name in urls:
            for n, (requests, wall, cpu) in merged[name].items():
                results[name][n] = summarise(requests, wall)
                results[name][n]["cpu_ms_per_token"] = _per_token(cpu, requests)
        results["rounds"] = merged["rounds"]
        ceilings = [c for c in merged["ceilings"] if c]
        if ceilings:  # each level's median over the rounds
            results["ceiling"] = {"command": ceilings[0]["command"], "rounds": ceilings}
            for n in ("1", "4", "8"):
                each = [c[n]["decode_tps"] for c in ceilings if n in c]
                if each:
                    results["ceiling"][n] = {"decode_tps": statistics.median(each)}
        for name, gw in gateways.items():
            results[name]["prompt_cache"] = prompt_cache(gw.base_url)
        results[SERVER]["command"] = " ".join([*args.peer_server_env, *cmd])
    return results


def _variant(spec: str) -> tuple[str, dict[str, str], str]:
    """`NAME:KEY=VALUE[,KEY=VALUE...]`: a gateway started with that environment, and the
    passport lines of the lower-case keys (TOML values, as written)."""
    name, _, assignments = spec.partition(":")
    pairs = [a.split("=", 1) for a in assignments.split(",") if "=" in a]
    env = {key: value for key, value in pairs if not key.islower()}
    keys = "".join(f"{key} = {value}\n" for key, value in pairs if key.islower())
    return f"gateway-{name}", env, keys


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


async def _alternate(
    urls: dict[str, tuple[str, str, int]],
    args: argparse.Namespace,
    deadline: float,
    ceiling: Callable[[], dict[str, Any] | None],
) -> dict[str, Any]:
    """Every level of every system in each round, the systems' order rotating by round;
    `ceiling` (llama-batched-bench) once per round too, unless skipped."""
    names = list(urls)
    merged: dict[str, Any] = {name: {} for name in names}
    merged["rounds"], merged["ceilings"] = [], []

    async def level(name: str, n: int) -> tuple[list[Request], float, float]:
        url, kind, pid = urls[name]
        cpu = cpu_seconds(pid)
        requests, wall = await stream_requests(url, "bench", kind, n, rounds_for(n, args.rounds), args.max_tokens, {})
        return requests, wall, cpu_seconds(pid) - cpu

    async def run() -> None:
        for name in names:
            await level(name, 1)  # warm-up
        for round_ in range(args.peer_rounds):
            got: dict[str, dict[str, float | None]] = {name: {} for name in names}
            cpu: dict[str, dict[str, float | None]] = {name: {} for name in names}
            runs: list[tuple[str, str, list[Request], float, float]] = []
            for n in args.clients:
                shift = round_ % len(names)
                for name in names[shift:] + names[:shift]:
                    requests, wall, used = await level(name, n)
                    runs.append((name, str(n), requests, wall, used))
                    got[name][str(n)] = summarise(requests, wall)["decode_tps"]
                    cpu[name][str(n)] = _per_token(used, requests)
            if "batched-bench" not in args.skip:
                merged["ceilings"].append(await asyncio.to_thread(ceiling))
            peer = got[SERVER]
            ratios = {
                name: {n: (tps / peer[n] if tps and peer[n] else None) for n, tps in levels.items()}
                for name, levels in got.items()
                if name != SERVER
            }
            for name, levels in cpu.items():
                if name != SERVER:
                    ratios[f"{name} CPU per token / {SERVER}'s"] = {
                        n: (ms / cpu[SERVER][n] if ms and cpu[SERVER][n] else None) for n, ms in levels.items()
                    }
            top = (merged["ceilings"] or [None])[-1] or {}
            for name, levels in got.items():
                c4, g4 = top.get("4", {}).get("decode_tps"), levels.get("4")
                ratios.setdefault(f"{name} / batched-bench", {})["4"] = g4 / c4 if g4 and c4 else None
            merged["rounds"].append(ratios)
            for name, n, requests, wall, used in runs:  # only whole rounds count (the deadline may cut one)
                requests_so_far, wall_so_far, cpu_so_far = merged[name].get(n, ([], 0.0, 0.0))
                merged[name][n] = (requests_so_far + requests, wall_so_far + wall, cpu_so_far + used)
            for name, by_level in ratios.items():
                print(f"  round {round_ + 1}: {name} decode {_ratios(by_level)}", flush=True)

    try:
        await asyncio.wait_for(run(), timeout=max(10.0, deadline - time.monotonic()))
    except TimeoutError:  # a busy machine: report the rounds done, not nothing
        print(f"  deadline: {len(merged['rounds'])} of {args.peer_rounds} rounds done", flush=True)
    return merged


def _per_token(cpu: float, requests: list[Request]) -> float | None:
    """Milliseconds of the server's CPU per streamed token: what a busy machine's scheduling
    does not change (much), unlike tokens/s."""
    tokens = sum(len(r.stamps) for r in requests)
    return cpu * 1000 / tokens if tokens else None


def _ratios(ratios: dict[str, float | None]) -> str:
    return ", ".join(f"{n} clients {r:.2f}" if r is not None else f"{n} clients -" for n, r in ratios.items())
