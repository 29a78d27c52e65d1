"""Admission control per model: a few running, a bounded FIFO queue, then 429."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable

from pipelines.errors import ModelUnavailable, QueueFull, ShuttingDown

__all__ = ["Admission", "AdmissionGate", "Admitted"]


class _Waiter:
    __slots__ = ("future", "weight")

    def __init__(self, future: asyncio.Future[None], weight: int) -> None:
        self.future = future
        self.weight = weight


class AdmissionGate:
    """One model's gate: `slots` sequences at once, `queue_size` requests waiting, each
    waiting at most `max_wait` seconds. First come, first served: a request that needs
    several slots (several choices) holds back those behind it until it fits."""

    def __init__(
        self, model_id: str, *, slots: int, queue_size: int, max_wait: float, on_change: Callable[[], None]
    ) -> None:
        self.model_id = model_id
        self.slots = slots
        self.queue_size = queue_size
        self.max_wait = max_wait
        self.running = 0
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._on_change = on_change
        self._closed: str | None = None

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def close(self, message: str) -> None:
        """Admits nobody from now on: every waiter, and every later arrival, gets
        `ShuttingDown` (503) with `message`. Running generations are untouched."""
        self._closed = message
        rejected = False
        while self._waiters:
            fut = self._waiters.popleft().future
            if not fut.done():
                fut.set_exception(self._unavailable())
                rejected = True
        if rejected:
            self._on_change()

    def resize(self, slots: int) -> None:
        """Follows a change of slots; new free slots go to the oldest waiters at once."""
        self.slots = slots
        if self._wake():
            self._on_change()

    def _unavailable(self) -> ShuttingDown:
        return ShuttingDown(self._closed or "")

    def admit(self, weight: int = 1) -> Admitted:
        """Holds `weight` slots (at most all of them) while the block runs:
        `async with gate.admit(n)`."""
        return Admitted(self, weight)

    async def _acquire(self, weight: int) -> int:
        """Waits for `weight` slots (at most all of them) and takes them; returns how many it took."""
        if self._closed is not None:
            raise self._unavailable()
        weight = max(1, min(weight, self.slots))
        if self.running + weight <= self.slots and not self._waiters:
            self.running += weight
        else:
            if len(self._waiters) >= self.queue_size:
                raise QueueFull(
                    f"Model '{self.model_id}' is busy: {self.running} running and {len(self._waiters)} waiting. "
                    "Retry shortly.",
                    retry_after=1.0,
                )
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiter = _Waiter(fut, weight)
            self._waiters.append(waiter)
            self._on_change()
            try:
                async with asyncio.timeout(self.max_wait):
                    await fut
            except BaseException as exc:
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    # the slots were handed over just as we gave up: pass them on
                    self._release(waiter.weight)
                elif fut.done() and not fut.cancelled():
                    # `close` turned this waiter away (and already took it off the queue)
                    raise self._unavailable() from None
                else:
                    fut.cancel()
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
                    self._wake()  # a heavy waiter leaving may let lighter ones behind it in
                self._on_change()
                if isinstance(exc, TimeoutError):
                    raise ModelUnavailable(
                        f"Model '{self.model_id}' did not become free within {self.max_wait:g} s.",
                        retry_after=self.max_wait,
                    ) from None
                raise
            weight = waiter.weight
        self._on_change()
        return weight

    def _release(self, weight: int) -> None:
        self.running -= weight
        self._wake()

    def _wake(self) -> bool:
        """Hands free slots to the oldest waiters, in order, while the next one fits (so
        nobody jumps the queue); True when someone was let in."""
        woke = False
        while self._waiters:
            head = self._waiters[0]
            if head.future.done():
                self._waiters.popleft()
                continue
            head.weight = min(head.weight, self.slots)  # the gate may have shrunk since
            if self.running + head.weight > self.slots:
                break
            self._waiters.popleft()
            self.running += head.weight
            head.future.set_result(None)
            woke = True
        return woke


class Admitted:
    """`AdmissionGate.admit`: slots held while the block runs. A class rather than a
    generator-based context manager: it is entered on every request."""

    __slots__ = ("_gate", "_weight")

    def __init__(self, gate: AdmissionGate, weight: int) -> None:
        self._gate = gate
        self._weight = weight

    async def __aenter__(self) -> None:
        self._weight = await self._gate._acquire(self._weight)

    async def __aexit__(self, *exc: object) -> None:
        gate = self._gate
        gate._release(self._weight)
        gate._on_change()


class Admission:
    """All gates, created on first use per model id."""

    def __init__(self, *, queue_size: int, max_wait: float, on_change: Callable[[str, int, int], None]) -> None:
        self._queue_size = queue_size
        self._max_wait = max_wait
        self._gates: dict[str, AdmissionGate] = {}
        self._on_change = on_change
        self._closed: str | None = None

    def gate(self, model_id: str, slots: int) -> AdmissionGate:
        gate = self._gates.get(model_id)
        if gate is not None and gate.slots != slots:
            # the provider behind the id changed (a stub fallback, a reload): follow it
            gate.resize(slots)
        if gate is None:

            def changed() -> None:
                self._on_change(model_id, gate.running, gate.waiting)  # type: ignore[union-attr]

            gate = AdmissionGate(
                model_id, slots=slots, queue_size=self._queue_size, max_wait=self._max_wait, on_change=changed
            )
            if self._closed is not None:
                gate.close(self._closed)
            self._gates[model_id] = gate
        return gate

    @property
    def gates(self) -> list[AdmissionGate]:
        return list(self._gates.values())

    def close(self, message: str = "The gateway is shutting down.") -> None:
        """Shutdown: every gate, present and future, turns waiters and newcomers away (503)."""
        self._closed = message
        for gate in self._gates.values():
            gate.close(message)
