"""A real PostgreSQL server of the test's own: Debian's binaries (`initdb`, `pg_ctl`) on a
data folder in a temporary directory, listening on a free loopback port, stopped (and
its folder removed) at the end. Nothing else on the machine is touched: no cluster of the
system's is used, started or stopped.

PostgreSQL refuses to run as root; as root, it runs as the `postgres` user that Debian's
package creates, in a folder handed to that user."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.served import free_port

__all__ = ["Postgres", "postgres_server"]


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class Postgres:
    """One server: `url` for the gateway, `stop()` and `start()` for the tests that take it away."""

    def __init__(self, bin_dir: Path, root: Path, user: str | None) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.url = f"postgresql://mia@127.0.0.1:{self.port}/postgres"
        self._user = user

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run(
            [str(self.bin_dir / tool), *args], capture_output=True, text=True, user=self._user, timeout=120, check=False
        )
        if result.returncode != 0:
            log = (self.root / "server.log").read_text(errors="replace") if (self.root / "server.log").exists() else ""
            raise RuntimeError(f"{tool} {' '.join(args)} failed:\n{result.stdout}{result.stderr}\n{log}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "mia", "--auth=trust", "--no-sync", "-E", "UTF8")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


@contextmanager
def postgres_server() -> Iterator[Postgres]:
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.fail(
            "PostgreSQL's initdb and pg_ctl are missing: `scripts/install.sh --test` installs Debian's postgresql",
            pytrace=False,
        )
    root = Path(tempfile.mkdtemp(prefix="mia-pg-"))
    user = None
    if os.geteuid() == 0:
        user = "postgres"
        owner = pwd.getpwnam(user)
        os.chown(root, owner.pw_uid, owner.pw_gid)
    server = Postgres(bin_dir, root, user)
    try:
        server.init()
        server.start()
        yield server
    finally:
        try:
            server.stop()
        except RuntimeError:
            pass  # already stopped by the test
        shutil.rmtree(root, ignore_errors=True)
