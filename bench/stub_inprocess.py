"""The stub path's cost per request inside the process: the whole ASGI app called in a loop,
no sockets, no server, beside a bare Litestar handler called the same way.

    .venv/bin/python bench/stub_inprocess.py            # about 30 s

Prints microseconds per non-stream request for: the bare handler (bench/bare_app.py), the
gateway's routes alone (the direct generation routes before Litestar), with its ASGI
middleware, with metrics, and with the event log at INFO (text, the default format, to
/dev/null) -- each step adds one layer, so the differences say what each costs. Best of three rounds of `--requests` each, after a warm-up; one process per
variant. Compare differences and ratios, not absolutes (the machines are shared).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from workload import STUB_SETTINGS

BODY = b'{"model":"stub-chat","messages":[{"role":"user","content":"Hello there"}],"max_tokens":4}'
VARIANTS = ("bare", "routes", "middleware", "metrics", "log")


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 5555),
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
        ],
        "state": {"request_id": "req_0123456789abcdef0123456789abcdef"},
    }


def _app(variant: str, tmp: Path) -> tuple[Any, Any]:
    """The ASGI app of `variant`, and the gateway to load (None for the bare handler).

    Imported here, per variant: each variant runs in a process of its own, and the bare
    handler's process holds none of the gateway's modules."""
    if variant == "bare":
        import bare_app

        return bare_app.app, None
    from app.direct_routes import DirectRoutes
    from app.factory import DIRECT, create_app, create_litestar
    from app.gateway import build_gateway
    from app.logs import configure_logging, log_events
    from app.metrics import install_metrics
    from app.settings import load_settings

    config = tmp / "stub.toml"
    config.write_text(STUB_SETTINGS)
    lines = configure_logging("info" if variant == "log" else "warning", "text")  # the default format
    lines.setStream(open(os.devnull, "w"))  # noqa: SIM115 (lives as long as the process)
    gateway = build_gateway(load_settings(str(config)))
    if variant in ("metrics", "log"):
        install_metrics(gateway.registry, gateway.bus, gateway.settings.models)
    if variant == "log":
        log_events(gateway.bus, lines=lines)
    if variant == "routes":
        return DirectRoutes(create_litestar(gateway), gateway, DIRECT), gateway
    return create_app(gateway), gateway


async def _measure(variant: str, requests: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        app, gateway = _app(variant, Path(tmp))
    if gateway is not None:
        await gateway.manager.load_all()
    statuses: set[int] = set()

    async def one() -> None:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": BODY, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.add(message["status"])

        await app(_scope(), receive, send)

    for _ in range(1000):
        await one()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(requests):
            await one()
        best = min(best, (time.perf_counter() - start) / requests)
    if statuses != {200}:
        raise RuntimeError(f"{variant}: statuses {statuses}")
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10000, help="requests per round (1,000-100,000)")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    requests = min(max(args.requests, 1000), 100_000)
    if args.variant:
        print(f"{asyncio.run(_measure(args.variant, requests)):.1f}")
        return
    print(f"{'variant':<12} {'us/request':>10}")
    for variant in VARIANTS:
        out = subprocess.run(
            [sys.executable, __file__, "--variant", variant, "--requests", str(requests)],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        print(f"{variant:<12} {float(out.stdout.strip().splitlines()[-1]):>10.1f}")


if __name__ == "__main__":
    main()
