"""`serve --workers N`: N forked server processes on one port (a listener each, with
SO_REUSEPORT), and a supervisor.

Only for settings with no in-process model (stub, replay and upstream providers): a local
model in every worker would load its weights N times and split the machine's cores N ways.

Metrics add up across workers through prometheus-client's multiprocess mode: each worker
writes its series to memory-mapped files in a folder of the supervisor's, and whichever
worker answers a scrape sums them (`MultiProcessCollector`). The folder must be named in
`PROMETHEUS_MULTIPROC_DIR` before prometheus-client is first imported, so the supervisor
sets it before anything imports `app.metrics`, and the workers inherit it by fork.

The supervisor forwards SIGTERM/SIGINT to the workers as SIGTERM (each drains as a single
process does), restarts a worker that dies on its own, and exits 0 when all have stopped.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.settings import Settings, SettingsError
from pipelines.config import LlamaModelConfig

__all__ = ["MULTIPROC_ENV", "bind_listener", "check_workers", "metrics_folder", "supervise"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_RESTART_PAUSE = 1.0
"""Seconds between a worker's death and its replacement (a worker that dies at start-up
must not become a fork loop)."""
_PR_SET_PDEATHSIG = 1

log = logging.getLogger("mia.workers")


def check_workers(settings: Settings, workers: int) -> None:
    """Refuses `workers` that these settings cannot be served with (a `SettingsError`
    naming the models and the file)."""
    if workers < 1:
        raise SettingsError(f"--workers must be at least 1, got {workers}")
    if workers == 1:
        return
    local = [m.id for m in settings.models if isinstance(m, LlamaModelConfig)]
    if local:
        raise SettingsError(
            f"{settings.source}: --workers {workers} needs settings with no in-process model, but "
            f'{", ".join(local)} run in process (provider = "llama_cpp"): every worker would load the '
            "weights again. Serve them with --workers 1, or put them behind an upstream."
        )


def bind_listener(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on `host:port`; with `reuse_port`, one of a group on the same
    port among which the kernel spreads new connections evenly."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto named, not 0: asyncio sets TCP_NODELAY only on sockets whose proto is TCP, and
    # accepted sockets take the listener's (without it, each response's second write
    # waited for a delayed ACK: 40 ms a request, a quarter of one worker's requests/s)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _die_with_parent() -> None:
    """A worker gets SIGTERM when the supervisor dies, even by SIGKILL (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _spawn(index: int, socks: list[socket.socket], run_worker: Callable[[int, socket.socket], None]) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 0
    sock = socks[index]
    for other in socks:
        if other is not sock:
            other.close()
    try:
        # Its own process group: a terminal's Ctrl-C reaches the supervisor alone, which
        # passes it on once, as SIGTERM (a second signal would make uvicorn skip the drain).
        os.setpgrp()
        _die_with_parent()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        run_worker(index, sock)
    except BaseException:  # a worker must never return into the supervisor's code
        log.exception("worker %d failed", index)
        code = 1
    finally:
        os._exit(code)


def supervise(
    *, host: str, port: int, workers: int, run_worker: Callable[[int, socket.socket], None], metrics_dir: Path
) -> int:
    """Binds `host:port` once per worker (SO_REUSEPORT), forks `workers` processes that
    each call `run_worker(index, sock)` with a listener of their own, and supervises them
    until a signal asks them to stop. `metrics_dir` is removed at the end."""
    from prometheus_client import multiprocess

    # One listener per worker, not one shared: with a shared one, wrk's 32 connections at 2
    # workers gave 5,137 requests/s in one run and 2,637-2,667 in two others (less than one
    # worker's 3,081): whichever worker woke first took the burst of new connections. The
    # supervisor keeps every listener open, so what arrives for a worker being replaced
    # waits in its backlog instead of being refused.
    first = bind_listener(host, port, reuse_port=True)
    bound = first.getsockname()[1]
    socks = [first, *(bind_listener(host, bound, reuse_port=True) for _ in range(workers - 1))]
    stopping = False
    pids: dict[int, int] = {}

    def stop(sig: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("serving on %s:%d with %d workers; metrics summed in %s", host, port, workers, metrics_dir)
    for index in range(workers):
        pids[_spawn(index, socks, run_worker)] = index
    try:
        while pids:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries os.wait
                continue
            if pid not in pids:
                continue
            index = pids.pop(pid)
            multiprocess.mark_process_dead(pid, str(metrics_dir))
            if not stopping:
                log.warning("worker %d (pid %d) exited with status %d; restarting it", index, pid, status)
                time.sleep(_RESTART_PAUSE)
                if not stopping:
                    pids[_spawn(index, socks, run_worker)] = index
    finally:
        for sock in socks:
            sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    log.info("all workers stopped")
    return 0


def metrics_folder() -> Path:
    """A fresh folder for the workers' metric files, named in the environment before
    prometheus-client is imported (its value class is chosen at import)."""
    folder = Path(tempfile.mkdtemp(prefix="mia-metrics-"))
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder
