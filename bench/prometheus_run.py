"""A Prometheus of our own for bench/render_dashboard.py: started on a free loopback port,
scraping one target, queried through its HTTP API, stopped at the end.

The binary is the one scripts/install.sh --test unpacks into the venv (or any on PATH);
it never touches a Prometheus the machine already runs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from processes import HOST, answers, free_port, log_process, tool, wait_ready

__all__ = ["Prometheus", "grafana_macros", "run_prometheus"]


def grafana_macros(expr: str, *, rate_interval: str, range_: str, model: str = ".*") -> str:
    """`expr` as Grafana sends it: its macros filled in, the `$model` variable set to All."""
    for name, value in (("$__rate_interval", rate_interval), ("$__range", range_), ("${model}", model)):
        expr = expr.replace(name, value)
    return expr.replace("$model", model)


class Prometheus:
    """Prometheus' HTTP API (`/api/v1/...`); a failed query raises RuntimeError."""

    def __init__(self, base_url: str, log: Path) -> None:
        self.base_url = base_url
        self.log = log
        self._http = httpx.Client(base_url=base_url, timeout=10.0)

    def _data(self, endpoint: str, **params: Any) -> Any:
        r = self._http.get(f"/api/v1/{endpoint}", params=params)
        body = r.json()
        if r.status_code != 200 or body.get("status") != "success":
            raise RuntimeError(f"prometheus {endpoint} {params}: {r.status_code} {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self._data("query", query=expr)["result"])

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        return list(self._data("query_range", query=expr, start=start, end=end, step=step)["result"])

    def scrapes(self, job: str) -> int:
        """How many scrapes of `job` are stored (in the last hour)."""
        result = self.query(f'count_over_time(up{{job="{job}"}}[1h])')
        return int(float(result[0]["value"][1])) if result else 0

    def wait_scrapes(self, n: int, job: str = "mia-gateway", timeout: float = 30.0) -> None:
        """Waits until `n` more scrapes of `job` are stored."""
        target = self.scrapes(job) + n
        limit = time.monotonic() + timeout
        while self.scrapes(job) < target:
            if time.monotonic() > limit:
                raise RuntimeError(
                    f"fewer than {n} scrapes of {job} in {timeout:.0f}s:\n{self.log.read_text()[-3000:]}"
                )
            time.sleep(0.2)

    def close(self) -> None:
        self._http.close()


@contextlib.contextmanager
def run_prometheus(target: str, tmp_dir: Path, *, scrape_interval: str = "1s") -> Iterator[Prometheus]:
    """A Prometheus scraping `target` (host:port) as job "mia-gateway", its data in `tmp_dir`."""
    binary = tool("prometheus")
    if binary is None:
        raise RuntimeError("no `prometheus` binary: scripts/install.sh --test unpacks one into .venv/bin")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    config = tmp_dir / "prometheus.yml"
    config.write_text(
        "global:\n"
        f"  scrape_interval: {scrape_interval}\n"
        f"  evaluation_interval: {scrape_interval}\n"
        "scrape_configs:\n"
        "  - job_name: mia-gateway\n"
        f"    scrape_timeout: {scrape_interval}\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n"
    )
    port = free_port()
    log = tmp_dir / "prometheus.log"
    args = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_dir / 'data'}",
        f"--web.listen-address={HOST}:{port}",
        "--storage.tsdb.retention.time=1d",
        "--log.level=warn",
    ]
    with log_process(args, log, grace=20.0) as proc:
        prom = Prometheus(f"http://{HOST}:{port}", log)
        try:
            wait_ready(proc, answers(f"{prom.base_url}/-/ready"), log, timeout=30, name="prometheus")
            yield prom
        finally:
            prom.close()
