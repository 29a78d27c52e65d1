"""`serve --workers N`: one port, N processes, metrics that add up, one clean stop."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from app.workers import bind_listener
from tests.support.configs import smollm2
from tests.support.served import ServedGateway, _console_script, serve

pytestmark = pytest.mark.slow

STUBS = """
[[models]]
id = "stub-a"
provider = "stub"
format = "chat"

[[models]]
id = "stub-b"
provider = "stub"
format = "harmony"
role = "primary"
"""


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def _wait_for(predicate, what: str, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def _counter(gw: ServedGateway, name: str, **labels: str) -> float:
    text = httpx.get(f"{gw.base_url}/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def _chat(base: str, model: str) -> int:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{base}/v1/chat/completions", json=body, timeout=30).status_code


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with serve(STUBS, tmp_path_factory.mktemp("workers"), extra_args=["--workers", "2"]) as gw:
        yield gw


def test_two_workers_serve_one_port_and_metrics_count_every_request(two_workers: ServedGateway) -> None:
    gw = two_workers
    assert len(_children(gw.proc.pid)) == 2
    before = _counter(gw, "mia_requests_total", endpoint="/v1/chat/completions", status="200")
    sent = 120
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: _chat(gw.base_url, ("stub-a", "stub-b")[i % 2]), range(sent)))
    assert codes == [200] * sent
    after = _counter(gw, "mia_requests_total", endpoint="/v1/chat/completions", status="200")
    assert after - before == sent
    completed = _counter(gw, "mia_generations_completed_total", reason="stub")
    assert completed >= sent
    # A gauge of a kind that every worker sets says 1, not 2: its mode is max, not sum.
    assert _counter(gw, "mia_model_loaded", model="stub-a") == 1.0


def _health_answered_by(gw: ServedGateway, pid: int) -> float:
    """`/health` requests that worker `pid` answered, from its own metric file (in the
    folder the supervisor names in its first line)."""
    folder = re.search(r"metrics summed in (\S+?)\"", gw.log_path.read_text())
    assert folder is not None
    values = MmapedDict(f"{folder[1]}/counter_{pid}.db", read_mode=True)
    try:
        return sum(
            value
            for key, value, _ in values.read_all_values()
            if json.loads(key)[1] == "mia_requests_total" and json.loads(key)[2].get("endpoint") == "/health"
        )
    finally:
        values.close()


def test_both_workers_take_connections(two_workers: ServedGateway) -> None:
    # Each new connection goes to whichever worker accepts it first: over many fresh
    # connections, sent two at a time, both must have answered some.
    def fresh(_: int) -> int:
        with httpx.Client() as client:
            return client.get(f"{two_workers.base_url}/health", timeout=10).status_code

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        assert set(pool.map(fresh, range(200))) == {200}
    answered = {pid: _health_answered_by(two_workers, pid) for pid in _children(two_workers.proc.pid)}
    assert len(answered) == 2 and all(n > 0 for n in answered.values()), answered
    assert sum(answered.values()) >= 200


def test_a_worker_that_dies_is_replaced(tmp_path: Path) -> None:
    with serve(STUBS, tmp_path, extra_args=["--workers", "2"]) as gw:
        first = _children(gw.proc.pid)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        _wait_for(lambda: len(_children(gw.proc.pid) - {victim}) == 2, "a second worker again")
        assert victim not in _children(gw.proc.pid)
        assert all(_chat(gw.base_url, "stub-a") == 200 for _ in range(10))
        assert "restarting it" in gw.log()


def test_sigterm_stops_every_worker_and_the_supervisor_exits_0(tmp_path: Path) -> None:
    with serve(STUBS, tmp_path, extra_args=["--workers", "2"]) as gw:
        workers = _children(gw.proc.pid)
        assert len(workers) == 2
        code = gw.stop(signal.SIGTERM)
        assert code == 0
        assert all(not Path(f"/proc/{pid}").exists() for pid in workers)
        assert "all workers stopped" in gw.log_path.read_text()


def test_local_models_with_several_workers_stop_start_up_naming_them(tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(STUBS + smollm2("small"))
    proc = subprocess.run(
        [*_console_script(), "serve", "--config", str(config), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "small" in proc.stderr and str(config) in proc.stderr and "--workers 2" in proc.stderr


def test_workers_below_one_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(STUBS)
    proc = subprocess.run(
        [*_console_script(), "serve", "--config", str(config), "--workers", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--workers must be at least 1" in proc.stderr


def test_the_shared_listener_is_tcp_so_asyncio_sets_nodelay_on_its_connections() -> None:
    # asyncio sets TCP_NODELAY only where the socket's proto is TCP, and accepted sockets
    # take the listener's: with proto 0 a response's second write waited for a delayed ACK.
    sock = bind_listener("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
        with socket.create_connection(sock.getsockname()) as client:
            accepted, _ = sock.accept()
            with accepted:
                assert accepted.proto == socket.IPPROTO_TCP
            assert client
    finally:
        sock.close()
