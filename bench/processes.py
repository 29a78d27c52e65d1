"""Processes the benchmarks start and stop: servers on loopback with their output in a log,
a wait until they answer, and a `mia-gateway serve` of a settings file.

Every process is started here, in a session of its own, and stopped here (SIGTERM, then
SIGKILL after a grace period): nothing the benchmarks did not start is ever signalled.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = [
    "HOST",
    "PYTHON",
    "REPO",
    "ServedGateway",
    "answers",
    "cpu_seconds",
    "free_port",
    "gateway_command",
    "log_process",
    "rss_mb",
    "serve_gateway",
    "served",
    "tool",
    "wait_ready",
]

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def tool(name: str) -> str | None:
    """An executable beside this Python first (scripts/install.sh --test unpacks Prometheus
    into the venv), then on PATH."""
    return shutil.which(name, path=str(Path(PYTHON).parent)) or shutil.which(name)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (all its threads) so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


@contextlib.contextmanager
def log_process(
    args: list[str], log: Path, *, grace: float = 10.0, cwd: Path = REPO
) -> Iterator[subprocess.Popen[bytes]]:
    """Runs a process (in `cwd`) with its output in `log`; stops it at the end (SIGTERM,
    then after `grace` seconds SIGKILL)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)
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


def answers(url: str) -> Callable[[], bool]:
    """A readiness probe: `url` answers a GET with 200."""
    return lambda: httpx.get(url, timeout=2.0).status_code == 200


def wait_ready(
    proc: subprocess.Popen[bytes], ready: Callable[[], bool], log: Path, *, timeout: float, name: str
) -> None:
    """Polls `ready` until it holds; the process exiting first, or `timeout` seconds passing,
    is an error that shows the end of its log."""
    limit = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{_tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if ready():
                return
        if time.monotonic() > limit:
            raise RuntimeError(f"{name} not ready after {timeout:.0f}s:\n{_tail(log)}")
        time.sleep(0.05)


@contextlib.contextmanager
def served(
    args: list[str], log: Path, ready_url: str, *, timeout: float = 120.0, grace: float = 20.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Starts a server, waits until `ready_url` answers 200, stops it at the end."""
    with log_process(args, log, grace=grace) as proc:
        wait_ready(proc, answers(ready_url), log, timeout=timeout, name=" ".join(args[:3]))
        yield proc


def gateway_command(config: Path, port: int, extra: Sequence[str] = ()) -> list[str]:
    """`mia-gateway serve` of `config` on loopback, JSON log lines (and `extra` arguments)."""
    script = Path(PYTHON).parent / "mia-gateway"
    head = [str(script)] if script.exists() else [PYTHON, "-m", "app.cli"]
    return [
        *head,
        "serve",
        "--config",
        str(config),
        "--host",
        HOST,
        "--port",
        str(port),
        "--log-format",
        "json",
        *extra,
    ]


@dataclass(frozen=True)
class ServedGateway:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/v1"


@contextlib.contextmanager
def serve_gateway(
    config: Path, log: Path, *, timeout: float = 120.0, extra: Sequence[str] = ()
) -> Iterator[ServedGateway]:
    """A gateway serving `config` on a free port, ready (`/ready` answers 200) until the end."""
    port = free_port()
    command = gateway_command(config, port, extra)
    with served(command, log, f"http://{HOST}:{port}/ready", timeout=timeout) as proc:
        yield ServedGateway(proc, port, log)
