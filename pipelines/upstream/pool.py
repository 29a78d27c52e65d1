"""One model's upstreams: which to try (least in flight), and which to keep out (ejection).

Health rules, the same for request results and for active probes:

- a failure (`FAILURES`, or a failed probe) adds one to the upstream's consecutive
  failures; a success (a completed request, a 4xx that was the request's fault, a 2xx
  probe) sets them back to zero;
- at `eject_after` consecutive failures the upstream is ejected for `eject_seconds`:
  no request picks it while another upstream is healthy. Each further failure while
  ejected (a probe, typically) restarts the cool-down, so a dead upstream stays out for
  as long as its probes fail;
- when the cool-down ends it takes traffic again, still one failure away from the next
  ejection (half-open), until a success clears its count. A passing probe does not cut
  an ejection short: flapping costs more than a cool-down.

If every upstream of a model is ejected, all of them are tried anyway (a likely failure
beats a certain one); the fallback chain follows if they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

import httpx

from pipelines.config import ModelConfig, UpstreamConfig, UpstreamModelConfig
from pipelines.events import EventBus
from pipelines.upstream.errors import FAILURES, RESULTS
from pipelines.upstream.events import UpstreamRequestFinished, UpstreamStateChanged

__all__ = ["Upstream", "UpstreamPool", "display_url", "upstream_labels"]

_log = logging.getLogger(__name__)

State = Literal["healthy", "ejected"]


def display_url(url: str) -> str:
    """`url` without user info (credentials never reach a model card or a log line)."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(userinfo=b"")) if parsed.userinfo else url


def upstream_labels(upstreams: Iterable[UpstreamConfig]) -> list[str]:
    """Metric labels of a model's upstreams: `host:port`, made unique with `#index`.

    Bounded by the configuration, so requests can never mint a series."""
    labels: list[str] = []
    for i, up in enumerate(upstreams):
        url = httpx.URL(up.base_url)
        port = url.port or (443 if url.scheme == "https" else 80)
        label = f"{url.host}:{port}"
        labels.append(label if label not in labels else f"{label}#{i}")
    return labels


def fleet_labels(models: Iterable[ModelConfig]) -> dict[str, list[str]]:
    """The upstream labels of every model served by upstreams, by model id."""
    return {m.id: upstream_labels(m.upstreams) for m in models if isinstance(m, UpstreamModelConfig)}


class Upstream:
    """One backend of a model: its pooled client, its load and its health."""

    def __init__(self, index: int, config: UpstreamConfig, label: str, health_url: str) -> None:
        self.index = index
        self.config = config
        self.label = label
        self.base_url = config.base_url.rstrip("/")
        self.url = display_url(self.base_url)
        self.health_url = health_url
        self.client: httpx.AsyncClient | None = None
        self.in_flight = 0
        self.consecutive_failures = 0
        self.ejected_until = 0.0
        """`time.monotonic()` until which the upstream is out (0: never ejected)."""
        self.ejections = 0
        self.reported: State = "healthy"
        """The state last announced by an event (what the `healthy` gauge shows)."""
        self.timer: asyncio.TimerHandle | None = None

    def ejected(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) < self.ejected_until

    @property
    def state(self) -> State:
        return "ejected" if self.ejected() else "healthy"

    def snapshot(self) -> dict[str, Any]:
        """What the model card shows of this upstream."""
        now = time.monotonic()
        ejected = self.ejected(now)
        return {
            "url": self.url,
            "model": self.config.model,
            "state": "ejected" if ejected else "healthy",
            "in_flight": self.in_flight,
            "consecutive_failures": self.consecutive_failures,
            "ejections": self.ejections,
            "ejected_for_seconds": round(self.ejected_until - now, 3) if ejected else None,
        }


def _health_url(base_url: str, health_path: str | None) -> str:
    """`{base_url}/models` by default; a `health_path` starting with `/` is taken from the
    server's root (vLLM and llama.cpp's server answer `/health` there), else below base_url."""
    base = base_url.rstrip("/")
    if health_path is None:
        return f"{base}/models"
    if health_path.startswith("/"):
        return str(httpx.URL(base).copy_with(path=health_path, query=None))
    return f"{base}/{health_path}"


class UpstreamPool:
    """The upstreams of one `openai_http` model and the rules that pick among them."""

    def __init__(self, config: UpstreamModelConfig, bus: EventBus) -> None:
        self.model_id = config.id
        self.eject_after = config.eject_after
        self.eject_seconds = config.eject_seconds
        self.probe_seconds = config.probe_seconds
        self.probe_timeout = config.connect_timeout
        self._bus = bus
        labels = upstream_labels(config.upstreams)
        self.upstreams = [
            Upstream(i, up, labels[i], _health_url(up.base_url, config.health_path))
            for i, up in enumerate(config.upstreams)
        ]
        self._turn = 0

    # -- clients ----------------------------------------------------------------

    def open(self, make_client: Callable[[Upstream], httpx.AsyncClient]) -> None:
        for up in self.upstreams:
            if up.client is None:
                up.client = make_client(up)

    async def aclose(self) -> None:
        for up in self.upstreams:
            if up.timer is not None:
                up.timer.cancel()
                up.timer = None
            client, up.client = up.client, None
            if client is not None:
                await client.aclose()

    # -- choice -----------------------------------------------------------------

    def candidates(self) -> list[Upstream]:
        """The order in which one request tries the upstreams: healthy ones, least in
        flight first, ties taken in turn (so that sequential requests spread out)."""
        now = time.monotonic()
        live = [u for u in self.upstreams if not u.ejected(now)] or list(self.upstreams)
        n = len(self.upstreams)
        turn = self._turn
        self._turn += 1
        return sorted(live, key=lambda u: (u.in_flight, (u.index - turn) % n))

    # -- health -----------------------------------------------------------------

    def record(self, up: Upstream, result: str) -> None:
        """A request to `up` ended with `result` (one of `RESULTS`)."""
        assert result in RESULTS, result
        self._bus.emit(UpstreamRequestFinished(model_id=self.model_id, upstream=up.label, result=result))
        if result in FAILURES:
            self._failed(up, result)
        elif result in ("ok", "client_error"):
            up.consecutive_failures = 0

    def _failed(self, up: Upstream, reason: str) -> None:
        up.consecutive_failures += 1
        if up.consecutive_failures < self.eject_after:
            return
        now = time.monotonic()
        up.ejected_until = now + self.eject_seconds
        if up.timer is not None:
            up.timer.cancel()
        with contextlib.suppress(RuntimeError):  # no running loop: the state is read lazily anyway
            up.timer = asyncio.get_running_loop().call_later(self.eject_seconds, self._cool_down_over, up)
        if up.reported != "ejected":
            up.reported = "ejected"
            up.ejections += 1
            _log.warning(
                "upstream %s of model %s ejected for %gs after %d consecutive failures (last: %s)",
                up.url,
                self.model_id,
                self.eject_seconds,
                up.consecutive_failures,
                reason,
            )
            self._emit_state(up, "ejected", reason)

    def _cool_down_over(self, up: Upstream) -> None:
        up.timer = None
        if not up.ejected() and up.reported == "ejected":
            up.reported = "healthy"
            self._emit_state(up, "healthy", "cool_down_over")

    def _emit_state(self, up: Upstream, state: State, reason: str) -> None:
        self._bus.emit(
            UpstreamStateChanged(
                model_id=self.model_id,
                upstream=up.label,
                state=state,
                reason=reason,
                consecutive_failures=up.consecutive_failures,
            )
        )

    # -- active probes ----------------------------------------------------------

    async def probe_once(self) -> None:
        """GETs every upstream's health URL once (skipping those without a client yet)."""
        await asyncio.gather(*(self._probe(up) for up in self.upstreams))

    async def _probe(self, up: Upstream) -> None:
        client = up.client
        if client is None:
            return
        try:
            response = await client.get(up.health_url, timeout=self.probe_timeout)
            ok = response.is_success
        except httpx.HTTPError:
            ok = False
        if ok:
            up.consecutive_failures = 0
        else:
            self._failed(up, "probe_failed")

    async def probe_forever(self) -> None:
        """Probes every `probe_seconds` until cancelled (started by the app's lifespan)."""
        while True:
            try:
                await self.probe_once()
            except Exception:
                _log.exception("health probe of model %s failed", self.model_id)
            await asyncio.sleep(self.probe_seconds)
