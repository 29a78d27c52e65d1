"""Scale-out for real, on loopback, no mocks: gateway A serves a model whose upstreams are
two more gateway processes, B1 and B2 (stub models). Requests go through the OpenAI SDK
to A; B1 is killed (SIGKILL) part-way, and no request that had not yet streamed content
is lost: A ejects B1 and says so in /metrics and /v1/models."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.served import ServedGateway, serve

pytestmark = pytest.mark.slow

UPSTREAM = """
[[models]]
id = "stub-chat"
provider = "stub"
format = "chat"
max_output_tokens = 64
stub_words = 24
"""

REQUESTS = 40
KILL_AFTER = 10
WORKERS = 4


def _front(b1: ServedGateway, b2: ServedGateway) -> str:
    ups = ", ".join(f'{{ base_url = "{b.api_url}", model = "stub-chat" }}' for b in (b1, b2))
    # Probes every 30 s: the first runs at start-up, the next after the test, so it is
    # requests that find B1 dead (passive ejection), each one falling back to B2.
    return f"""
[server]
request_timeout = 60

[[models]]
id = "fleet"
provider = "openai_http"
format = "chat"
slots = 8
eject_after = 2
eject_seconds = 60
probe_seconds = 30
connect_timeout = 2
read_timeout = 20
upstreams = [{ups}]
"""


@dataclass
class Outcome:
    n: int
    stream: bool
    content: str = ""
    model: str | None = None
    error: str | None = None

    @property
    def lost(self) -> bool:
        """Failed before any content reached the client: a fallback should have saved it."""
        return self.error is not None and not self.content


def _ask(client: openai.OpenAI, n: int) -> Outcome:
    out = Outcome(n=n, stream=n % 2 == 0)
    messages = [{"role": "user", "content": f"Request number {n}"}]
    try:
        if out.stream:
            for chunk in client.chat.completions.create(model="fleet", messages=messages, stream=True):  # type: ignore[arg-type]
                out.model = chunk.model
                if chunk.choices and chunk.choices[0].delta.content:
                    out.content += chunk.choices[0].delta.content
        else:
            completion = client.chat.completions.create(model="fleet", messages=messages)  # type: ignore[arg-type]
            out.model = completion.model
            out.content = completion.choices[0].message.content or ""
    except openai.OpenAIError as exc:
        out.error = f"{type(exc).__name__}: {exc}"
    return out


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples if s.name == name
    ]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[ServedGateway, ServedGateway, ServedGateway]]:
    with (
        serve(UPSTREAM, tmp_path / "b1") as b1,
        serve(UPSTREAM, tmp_path / "b2") as b2,
        serve(_front(b1, b2), tmp_path / "a") as a,
    ):
        yield a, b1, b2


def test_killing_an_upstream_loses_no_request_that_had_not_streamed(
    fleet: tuple[ServedGateway, ServedGateway, ServedGateway],
) -> None:
    a, b1, b2 = fleet
    client = openai.OpenAI(base_url=a.api_url, api_key="unused", max_retries=0, timeout=30)

    def ask(n: int) -> Outcome:
        if n == KILL_AFTER:
            # killed by the worker about to send request KILL_AFTER, while the other
            # workers' requests are in flight (not by a thread that may wake up late)
            b1.stop(signal.SIGKILL)
        return _ask(client, n)

    with ThreadPoolExecutor(WORKERS) as pool:
        outcomes = list(pool.map(ask, range(REQUESTS)))
    assert b1.proc.poll() is not None

    lost = [o for o in outcomes if o.lost]
    assert not lost, lost
    served = [o for o in outcomes if o.error is None]
    # a stream already running on B1 when it died may end in an error event: only those
    cut_mid_stream = [o for o in outcomes if o.error is not None]
    assert all(o.stream and o.content for o in cut_mid_stream)
    assert len(served) >= REQUESTS - WORKERS
    assert all(o.model == "fleet" and len(o.content.split()) == 24 for o in served)

    metrics = httpx.get(f"{a.base_url}/metrics").text
    b1_label = f"127.0.0.1:{b1.port}"
    b2_label = f"127.0.0.1:{b2.port}"
    ejections = {s["upstream"]: v for s, v in _samples(metrics, "mia_upstream_ejections_total")}
    upstream_rows = "\n".join(line for line in metrics.splitlines() if "upstream" in line or "fallback" in line)
    assert ejections[b1_label] >= 1 and ejections[b2_label] == 0, upstream_rows
    healthy = {s["upstream"]: v for s, v in _samples(metrics, "mia_upstream_healthy")}
    assert (healthy[b1_label], healthy[b2_label]) == (0, 1)
    requests = {(s["upstream"], s["result"]): v for s, v in _samples(metrics, "mia_upstream_requests_total")}
    failed_on_b1 = sum(v for (up, result), v in requests.items() if up == b1_label and result != "ok")
    assert failed_on_b1 >= 2  # the failures that ejected it
    # each answer was served by exactly one upstream request; after the kill, by B2
    assert requests.get((b1_label, "ok"), 0) + requests[(b2_label, "ok")] == len(served)
    assert requests[(b2_label, "ok")] >= REQUESTS - KILL_AFTER - WORKERS
    hops = sum(v for s, v in _samples(metrics, "mia_fallbacks_total") if s["from_model"] == "fleet")
    # failures before the first token moved their requests on to B2 (a stream cut
    # part-way is a failure of B1's too, but it has nowhere to go)
    assert hops >= 1

    card = httpx.get(f"{a.api_url}/models/fleet").json()
    states = {u["url"]: u["state"] for u in card["upstreams"]}
    assert states == {b1.api_url: "ejected", b2.api_url: "healthy"}
