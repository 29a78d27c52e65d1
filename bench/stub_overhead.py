"""The gateway's own overhead on a stub model, beside a bare Litestar handler: `wrk -t1 -c32`
with a POST body (Lua), non-stream and stream, one worker each, same run; and the idle RSS
of a gateway with only stub models.

`bench/compare.py` runs `measure_stub` once. Run alone, it alternates the systems over
several rounds (the machine is shared: compare ratios within a round), and with `--against
DIR` it adds the gateway of another checkout of this repository (served from DIR with this
checkout's Python environment), for before/after figures:

    .venv/bin/python bench/stub_overhead.py --rounds 3 --seconds 10 [--against ../old-checkout]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from processes import HOST, PYTHON, REPO, free_port, log_process, rss_mb, serve_gateway, wait_ready
from workload import STUB_SETTINGS

__all__ = ["WRK_SCRIPT", "measure_stub", "wrk"]

WRK_SCRIPT = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"stub-chat","messages":[{"role":"user","content":"Hello there"}],"max_tokens":4%s}'
"""

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk(url: str, script: Path, seconds: int) -> dict[str, Any]:
    """One `wrk -t1 -c32` run: requests/s, p50/p99 latency (ms), non-2xx and socket errors."""
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
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(rps.group(1)) if rps else None,
        "requests": int(total.group(1)) if total else None,
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
    }


def _bare_command(port: int) -> list[str]:
    """bench/bare_app.py under uvicorn, with the loop and HTTP parser the gateway uses."""
    return [
        PYTHON,
        "-m",
        "uvicorn",
        "bare_app:app",
        "--app-dir",
        str(REPO / "bench"),
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


def _posts_ok(url: str) -> bool:
    body = {"model": "stub-chat", "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(url, json=body, timeout=2).status_code == 200


def measure_stub(tmp: Path, seconds: int) -> dict[str, Any]:
    scripts = {}
    for mode, extra in (("non_stream", ""), ("stream", ',"stream":true')):
        scripts[mode] = tmp / f"{mode}.lua"
        scripts[mode].write_text(WRK_SCRIPT % extra)
    out: dict[str, Any] = {}
    config = tmp / "stub.toml"
    config.write_text(STUB_SETTINGS)
    with serve_gateway(config, tmp / "gateway-stub.log") as gw:
        time.sleep(1.0)
        out["gateway_idle_rss_mb"] = rss_mb(gw.proc.pid)
        for mode, script in scripts.items():
            wrk(f"{gw.api_url}/chat/completions", script, 2)  # warm-up
            out[f"gateway_{mode}"] = wrk(f"{gw.api_url}/chat/completions", script, seconds)
        out["gateway_rss_after_mb"] = rss_mb(gw.proc.pid)
    port = free_port()
    url = f"http://{HOST}:{port}/v1/chat/completions"
    log = tmp / "bare.log"
    with log_process(_bare_command(port), log) as proc:
        wait_ready(proc, lambda: _posts_ok(url), log, timeout=30, name="bare Litestar app")
        for mode, script in scripts.items():
            wrk(url, script, 2)
            out[f"bare_{mode}"] = wrk(url, script, seconds)
    return out


def _gateway_from(checkout: Path, config: Path, log: Path) -> contextlib.AbstractContextManager[Any]:
    """A gateway served from another checkout's sources (`python -m app.cli` run there: its
    own `app`, `compat` and `pipelines` come first on the path)."""
    port = free_port()
    command = [PYTHON, "-m", "app.cli", "serve", "--config", str(config), "--host", HOST, "--port", str(port)]
    command += ["--log-format", "json"]

    @contextlib.contextmanager
    def run() -> Iterator[str]:
        with log_process(command, log, cwd=checkout) as proc:
            wait_ready(proc, lambda: httpx.get(f"http://{HOST}:{port}/ready", timeout=2).status_code == 200, log,
                       timeout=120, name=f"gateway from {checkout}")  # fmt: skip
            yield f"http://{HOST}:{port}/v1/chat/completions"

    return run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each system once per round (1-10)")
    parser.add_argument("--seconds", type=int, default=10, help="seconds of wrk per system and mode (2-60)")
    parser.add_argument("--against", type=Path, help="another checkout of this repository to serve beside")
    args = parser.parse_args()
    rounds, seconds = min(max(args.rounds, 1), 10), min(max(args.seconds, 2), 60)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        config = tmp / "stub.toml"
        config.write_text(STUB_SETTINGS)
        scripts = {}
        for mode, extra in (("non_stream", ""), ("stream", ',"stream":true')):
            scripts[mode] = tmp / f"{mode}.lua"
            scripts[mode].write_text(WRK_SCRIPT % extra)
        bare_port = free_port()
        bare_url = f"http://{HOST}:{bare_port}/v1/chat/completions"
        with contextlib.ExitStack() as stack:
            gw = stack.enter_context(serve_gateway(config, tmp / "gateway.log"))
            urls = {"gateway": f"{gw.api_url}/chat/completions"}
            if args.against is not None:
                urls["before"] = stack.enter_context(_gateway_from(args.against.resolve(), config, tmp / "before.log"))
            bare = stack.enter_context(log_process(_bare_command(bare_port), tmp / "bare.log"))
            wait_ready(bare, lambda: _posts_ok(bare_url), tmp / "bare.log", timeout=30, name="bare Litestar app")
            urls["bare"] = bare_url
            for url in urls.values():
                for script in scripts.values():
                    wrk(url, script, 2)  # warm-up
            print(f"uptime before: {os.getloadavg()}", flush=True)
            for r in range(1, rounds + 1):
                for mode, script in scripts.items():
                    got = {system: wrk(url, script, seconds) for system, url in urls.items()}
                    line = "  ".join(
                        f"{system} {g['rps']:7.0f}/s p50 {g['p50_ms']:5.2f} p99 {g['p99_ms']:6.2f} "
                        f"({g['p99_ms'] / g['p50_ms']:.1f}x)"
                        for system, g in got.items()
                    )
                    ratios = "  ".join(
                        f"{system}/bare {got[system]['rps'] / got['bare']['rps']:.2f}"
                        for system in urls
                        if system != "bare"
                    )
                    print(f"round {r} {mode:10} {line}  |  {ratios}", flush=True)
            print(f"gateway RSS after: {rss_mb(gw.proc.pid):.0f} MB", flush=True)


if __name__ == "__main__":
    main()
