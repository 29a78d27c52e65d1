"""The open-files limit the HTTP bounds need (the bounds themselves are tested end to end
in tests/e2e/test_hardening.py, over raw sockets against a served gateway)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.support.served import REPO


def _in_child(soft: int, hard: int | None, max_connections: int) -> dict[str, object]:
    """Runs `fit_open_files_limit` in a child process whose limit starts at (soft, hard);
    returns its answer and the limit after."""
    code = textwrap.dedent(
        f"""
        import json, resource
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {"hard" if hard is None else hard}))
        from app.http_protocol import fit_open_files_limit
        problem = fit_open_files_limit({max_connections})
        print(json.dumps({{"problem": problem, "limit": resource.getrlimit(resource.RLIMIT_NOFILE)}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_the_soft_limit_is_raised_to_fit_max_connections() -> None:
    out = _in_child(soft=100, hard=None, max_connections=300)  # (any usual hard limit is above 556)
    assert out["problem"] is None
    soft, _ = out["limit"]  # type: ignore[misc]
    assert soft == 300 + 256


def test_a_hard_limit_too_low_is_raised_as_far_as_it_goes_and_named() -> None:
    out = _in_child(soft=300, hard=600, max_connections=1000)
    assert out["limit"] == [600, 600]
    problem = str(out["problem"])
    assert "[server].max_connections = 1000" in problem and "at most 600" in problem


def test_a_limit_that_fits_is_left_alone() -> None:
    out = _in_child(soft=600, hard=None, max_connections=300)
    assert out["problem"] is None and out["limit"][0] == 600  # type: ignore[index]
