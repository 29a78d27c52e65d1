"""Runs `mia-gateway serve` as a real subprocess on loopback, for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

__all__ = ["ServedGateway", "free_port", "serve", "wait_until_ready"]

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
        """The log so far, with every line of what the gateway did before this call.

        The gateway writes the event lines of one event-loop turn together, on the loop's
        next turn, so the lines of a response's last events can follow its last bytes by a
        turn. One round trip through the loop (any request) writes them first."""
        if self.proc.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{self.base_url}/health", timeout=10.0)
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


def wait_until_ready(
    name: str, proc: subprocess.Popen[bytes], url: str, timeout: float, log: Callable[[], str], interval: float = 0.05
) -> None:
    """Polls `url` until it answers 200; a process that exits or a deadline passed is an
    error that shows the process's log."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} not ready after {timeout}s:\n{log()}")
        time.sleep(interval)


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
    # stored responses stay in the test's folder, never in the user's data folder
    full_env = {**os.environ, "MIA_STORAGE_DATA_DIR": str(tmp_dir), **(env or {})}
    full_env.pop("MIA_CONFIG", None) if config_text is None and "MIA_CONFIG" not in (env or {}) else None
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=REPO)
    gw = ServedGateway(proc, port, log_path)
    try:
        path = "/ready" if wait_ready else "/health"
        wait_until_ready("gateway", proc, f"{gw.base_url}{path}", ready_timeout, gw.log)
        yield gw
    finally:
        gw.stop()
