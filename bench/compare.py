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
4. llama.cpp's own server (`llama-server -np 4 -c 8192`, "llama.cpp-server"), the peer to
   match: it and the gateway at `slots = 4` run side by side in alternating rounds
   (`--peer-rounds`), so both see the same load; and `llama-batched-bench` (32-token
   prompts, 64 generated, 1/4/8 sequences) as the ceiling of batched decode. Both are
   built by scripts/build_llama_server.sh and skipped, with a line saying so, where not.

    .venv/bin/python bench/compare.py --clients 1,4 --skip direct --skip llama-server \
        --skip llama-server-queued --skip gateway-slots1 --skip stub   # the peer only, ~2 min

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
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from llm_systems import llm_phase
from models import MODELS, model_file
from peer import SERVER, batched_bench, peer_phase
from processes import PYTHON, REPO
from report import machine, print_report, uptime, verdicts
from stub_overhead import measure_stub

RESULTS = REPO / "bench" / "results"


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
            SERVER,
            "batched-bench",
            "gateway",
            "gateway-slots4",
            "gateway-slots1",
            "stub",
            "llm",
        ],
    )
    p.add_argument("--peer-rounds", type=int, default=3, help=f"alternating rounds of gateway and {SERVER} (1-6)")
    p.add_argument(
        "--peer-variant",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE[,KEY=VALUE]",
        help="one more gateway in the peer rounds, started with that environment (lower-case keys: passport keys)",
    )
    p.add_argument(
        "--peer-server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"{SERVER}'s environment (GOMP_SPINCOUNT=3000: the gateway's OpenMP spin)",
    )
    p.add_argument(
        "--peer-flash-attn",
        choices=("auto", "on", "off"),
        default="auto",
        help=f"{SERVER} and llama-batched-bench's -fa (auto: as shipped; the gateway runs without)",
    )
    p.add_argument("--deadline", type=float, default=900.0, help="seconds the whole run may take (at most 1800)")
    p.add_argument("--out", type=Path, help="JSON file (default: bench/results/compare-<date>.json)")
    args = p.parse_args()
    args.clients = [int(c) for c in str(args.clients).split(",")]
    if not all(1 <= c <= 16 for c in args.clients) or not 1 <= args.rounds <= 5 or not 1 <= args.max_tokens <= 512:
        p.error("clients 1-16, rounds 1-5, max-tokens 1-512")
    if not all("=" in a for a in args.peer_server_env):
        p.error("--peer-server-env KEY=VALUE")
    if not 1 <= args.peer_rounds <= 6:
        p.error("peer-rounds 1-6")
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
            "peer_rounds": args.peer_rounds,
            "peer_flash_attn": args.peer_flash_attn,
            "peer_server_env": args.peer_server_env,
        },
        "llm": {},
        "stub": {},
    }
    print(f"{report['machine']['cpu']} x{report['machine']['nproc']}; {report['load_before']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="mia-compare-") as tmp_name:
        tmp = Path(tmp_name)
        if "llm" not in args.skip:
            path = model_file(args.model)
            report["config"]["gguf"] = str(path)
            kind = MODELS[args.model][1]
            peer: dict[str, Any] = {}
            if SERVER not in args.skip and "gateway" not in args.skip and "gateway-slots4" not in args.skip:
                peer = peer_phase(args, path, kind, tmp, deadline) or {}
            report["peer_rounds"] = peer.pop("rounds", [])
            report["ceiling"] = peer.pop("ceiling", {})
            report["llm"] = llm_phase(args, path, kind, tmp, deadline, peer)
            if not report["ceiling"] and "batched-bench" not in args.skip:
                report["ceiling"] = batched_bench(path, args, deadline) or {}
        if "stub" not in args.skip:
            print("stub overhead (wrk) ...", flush=True)
            report["stub"] = measure_stub(tmp, args.wrk_seconds)
    report["load_after"] = uptime()
    report["seconds"] = time.time() - started
    report["targets"] = verdicts(
        report["llm"], report["stub"], report.get("ceiling", {}), report.get("peer_rounds", [])
    )
    print_report(report)
    out = args.out or RESULTS / f"compare-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten: {out} ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
