"""Runs `mia-gateway serve` as a real subprocess on loopback, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

__all__ = ["ServedGateway", "free_port", "serve"]

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _console_script() -> list[str]:
    script = Path(sys.executable).parent / "mia-gateway"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "app.cli"]


class ServedGateway:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.log_path = log_path
        self.base_url = f"http://127.0.0.1:{port}"
        self.api_url = f"{self.base_url}/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@contextmanager
def serve(
    config_text: str | None,
    tmp_dir: Path,
    *,
    env: dict[str, str] | None = None,
    extra_args: list[str] | None = None,
    ready_timeout: float = 120.0,
    wait_ready: bool = True,
) -> Iterator[ServedGateway]:
    """Starts a gateway with the given settings TOML (None: the embedded default)."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [*_console_script(), "serve", "--host", "127.0.0.1", "--port", str(port), "--log-format", "json"]
    if config_text is not None:
        cfg = tmp_dir / "settings.toml"
        cfg.write_text(config_text)
        args += ["--config", str(cfg)]
    args += extra_args or []
    log_path = tmp_dir / f"gateway-{port}.log"
    full_env = {**os.environ, **(env or {})}
    full_env.pop("MIA_CONFIG", None) if config_text is None and "MIA_CONFIG" not in (env or {}) else None
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=REPO)
    gw = ServedGateway(proc, port, log_path)
    try:
        deadline = time.monotonic() + ready_timeout
        path = "/ready" if wait_ready else "/health"
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {proc.returncode}:\n{gw.log()}")
            try:
                if httpx.get(f"{gw.base_url}{path}", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway not ready after {ready_timeout}s:\n{gw.log()}")
            time.sleep(0.05)
        yield gw
    finally:
        gw.stop()
