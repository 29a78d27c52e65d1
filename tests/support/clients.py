"""Runs a client program of the client-compatibility suite (tests/clients/programs) in the
environment `scripts/install_clients.sh` made for it, against a served gateway."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["CLIENTS", "PROGRAMS", "client_command", "run_client"]

REPO = Path(__file__).resolve().parents[2]
CLIENTS = REPO / ".clients"
PROGRAMS = REPO / "tests" / "clients" / "programs"


def _interpreter(group: str) -> list[str]:
    if group == "node":
        return ["node"]
    python = CLIENTS / group / "bin" / "python"
    if not python.exists():
        raise RuntimeError(f"{python} is missing: run `bash scripts/install.sh --test` (it installs the clients)")
    return [str(python)]


def client_command(group: str, command: str) -> Path:
    """A command installed in a client environment (`lm_eval` in `.clients/lm_eval`)."""
    path = CLIENTS / group / "bin" / command
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run `bash scripts/install.sh --test` (it installs the clients)")
    return path


def run_client(group: str, program: str, *args: str, api_url: str, timeout: float = 300.0) -> dict[str, Any]:
    """Runs `program` with `args`; returns the JSON object it printed last. A client that
    fails is an assertion error carrying its whole output."""
    env = {**os.environ, "OPENAI_BASE_URL": api_url, "OPENAI_API_KEY": "sk-client-suite"}
    path = PROGRAMS / program
    if group == "node":
        # An ES module resolves its imports from its own folder upwards (NODE_PATH is
        # ignored): the program runs from a copy beside the installed node_modules.
        copy = CLIENTS / "node" / program
        shutil.copyfile(path, copy)
        path = copy
    command = [*_interpreter(group), str(path), *args]
    cwd = path.parent
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    assert proc.returncode == 0, f"{program} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"{program} printed no result:\n{proc.stdout}\n{proc.stderr}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result
