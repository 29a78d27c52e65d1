"""bench/relay.py stays usable: a tiny run starts its upstreams and its gateway, relays
every chunk, and reports every figure (no timing is judged here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.served import REPO

pytestmark = pytest.mark.slow


def test_the_relay_benchmark_measures_both_upstreams_directly_and_relayed(tmp_path: Path) -> None:
    out = tmp_path / "relay.json"
    args = ["--rounds", "2", "--requests", "4", "--chunks", "8", "--levels", "1,2", "--json", str(out)]
    r = subprocess.run(
        [sys.executable, str(REPO / "bench" / "relay.py"), *args], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stdout + r.stderr
    results = json.loads(out.read_text())
    assert results["rounds_done"] == 2
    cells = {(c["upstream"], c["streams"], c["system"]): c for c in results["cells"]}
    assert set(cells) == {(t, n, s) for t in ("bare", "stub") for n in (1, 2) for s in ("direct", "gateway")}
    for cell in cells.values():
        assert (cell["requests"], cell["errors"]) == (8, 0)
        assert 0 < cell["ttft_p50_ms"] <= cell["ttft_p99_ms"]
        assert len(cell["chunks_per_s"]) == 2
        assert set(cell["cpu_us_per_chunk"]) == {"upstream_bare", "upstream_stub", "gateway", "client"}
    assert [(v["upstream"], v["streams"]) for v in results["verdicts"]] == [
        ("bare", 1),
        ("bare", 2),
        ("stub", 1),
        ("stub", 2),
    ]
    for verdict in results["verdicts"]:
        assert verdict["throughput_ratio"] > 0
        assert len(verdict["throughput_ratios"]) == 2
    assert "added TTFT p50" in r.stdout


def test_the_relay_benchmark_refuses_bad_levels() -> None:
    r = subprocess.run(
        [sys.executable, str(REPO / "bench" / "relay.py"), "--levels", "1,500"], capture_output=True, text=True
    )
    assert r.returncode == 2
    assert "--levels must be" in r.stderr
