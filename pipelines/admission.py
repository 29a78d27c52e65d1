"""Admission control per model: a few running, a bounded FIFO queue, then 429."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Callable

from pipelines.errors import ModelUnavailable, QueueFull

__all__ = ["Admission", "AdmissionGate"]


class AdmissionGate:
    """One model's gate: `slots` generations at once, `queue_size` waiting, each
    waiting at most `max_wait` seconds. First come, first served."""

    def __init__(
        self, model_id: str, *, slots: int, queue_size: int, max_wait: float, on_change: Callable[[], None]
    ) -> None:
        self.model_id = model_id
        self.slots = slots
        self.queue_size = queue_size
        self.max_wait = max_wait
        self.running = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._on_change = on_change

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @contextlib.asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        if self.running < self.slots and not self._waiters:
            self.running += 1
        else:
            if len(self._waiters) >= self.queue_size:
                raise QueueFull(
                    f"Model '{self.model_id}' is busy: {self.running} running and {len(self._waiters)} waiting. "
                    "Retry shortly.",
                    retry_after=1.0,
                )
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            self._on_change()
            try:
                async with asyncio.timeout(self.max_wait):
                    await fut
            except BaseException as exc:
                if fut.done() and not fut.cancelled():
                    # the slot was handed over just as we gave up: pass it on
                    self._release()
                else:
                    fut.cancel()
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(fut)
                self._on_change()
                if isinstance(exc, TimeoutError):
                    raise ModelUnavailable(
                        f"Model '{self.model_id}' did not become free within {self.max_wait:g} s.",
                        retry_after=self.max_wait,
                    ) from None
                raise
        self._on_change()
        try:
            yield
        finally:
            self._release()
            self._on_change()

    def _release(self) -> None:
        # hand the slot straight to the oldest waiter, so nobody can jump the queue
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.running -= 1


class Admission:
    """All gates, created on first use per model id."""

    def __init__(self, *, queue_size: int, max_wait: float, on_change: Callable[[str, int, int], None]) -> None:
        self._queue_size = queue_size
        self._max_wait = max_wait
        self._gates: dict[str, AdmissionGate] = {}
        self._on_change = on_change

    def gate(self, model_id: str, slots: int) -> AdmissionGate:
        gate = self._gates.get(model_id)
        if gate is not None and gate.slots != slots:
            # the provider behind the id changed (a stub fallback, a reload): follow it
            gate.slots = slots
        if gate is None:

            def changed() -> None:
                self._on_change(model_id, gate.running, gate.waiting)  # type: ignore[union-attr]

            gate = AdmissionGate(
                model_id, slots=slots, queue_size=self._queue_size, max_wait=self._max_wait, on_change=changed
            )
            self._gates[model_id] = gate
        return gate

    @property
    def gates(self) -> list[AdmissionGate]:
        return list(self._gates.values())
