"""Admission control per model: `slots` at once, a bounded FIFO queue, a wait limit."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pipelines.admission import Admission, AdmissionGate
from pipelines.errors import ModelUnavailable, QueueFull


class Recorder:
    """The gate's change callback: every (running, waiting) it reported."""

    def __init__(self) -> None:
        self.gate: AdmissionGate | None = None
        self.seen: list[tuple[int, int]] = []

    def __call__(self) -> None:
        assert self.gate is not None
        self.seen.append((self.gate.running, self.gate.waiting))


def make_gate(*, slots: int = 1, queue_size: int = 8, max_wait: float = 5.0) -> tuple[AdmissionGate, Recorder]:
    rec = Recorder()
    gate = AdmissionGate("m", slots=slots, queue_size=queue_size, max_wait=max_wait, on_change=rec)
    rec.gate = gate
    return gate, rec


@contextlib.asynccontextmanager
async def holding(gate: AdmissionGate) -> AsyncIterator[None]:
    async with gate.admit():
        yield


async def until(predicate: object, ticks: int = 1000) -> None:
    """Lets the loop run until `predicate()` holds (no wall-clock sleeps)."""
    for _ in range(ticks):
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_free_slots_admit_at_once() -> None:
    gate, rec = make_gate(slots=2)
    async with gate.admit():
        assert (gate.running, gate.waiting) == (1, 0)
        async with gate.admit():
            assert (gate.running, gate.waiting) == (2, 0)
        assert gate.running == 1
    assert (gate.running, gate.waiting) == (0, 0)
    assert rec.seen == [(1, 0), (2, 0), (1, 0), (0, 0)]


async def test_waiters_are_admitted_first_come_first_served() -> None:
    gate, _ = make_gate(slots=1)
    order: list[int] = []
    release = asyncio.Event()

    async def worker(i: int) -> None:
        async with gate.admit():
            order.append(i)
            await release.wait()

    holder = gate.admit()
    await holder.__aenter__()
    tasks = []
    for i in range(6):
        tasks.append(asyncio.create_task(worker(i)))
        await until(lambda n=i + 1: gate.waiting == n)
    release.set()
    await holder.__aexit__(None, None, None)
    await asyncio.gather(*tasks)
    assert order == list(range(6))
    assert (gate.running, gate.waiting) == (0, 0)


async def test_a_newcomer_cannot_jump_the_queue_when_a_slot_frees() -> None:
    gate, _ = make_gate(slots=1)
    order: list[str] = []

    async def worker(name: str) -> None:
        async with gate.admit():
            order.append(name)

    holder = gate.admit()
    await holder.__aenter__()
    queued = asyncio.create_task(worker("queued"))
    await until(lambda: gate.waiting == 1)
    await holder.__aexit__(None, None, None)  # the slot goes to the waiter directly
    assert gate.running == 1
    late = asyncio.create_task(worker("late"))
    await asyncio.gather(queued, late)
    assert order == ["queued", "late"]


async def test_a_full_queue_is_refused_at_once_with_queue_full() -> None:
    gate, _ = make_gate(slots=1, queue_size=2)
    async with holding(gate):
        waiters = [asyncio.create_task(holding(gate).__aenter__()) for _ in range(2)]
        await until(lambda: gate.waiting == 2)
        with pytest.raises(QueueFull) as info:
            async with gate.admit():
                pass
        assert info.value.retry_after > 0
        assert info.value.code == "rate_limit_exceeded"
        assert "'m'" in info.value.message
        assert (gate.running, gate.waiting) == (1, 2)
        for t in waiters:
            t.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
    assert (gate.running, gate.waiting) == (0, 0)


async def test_a_zero_queue_refuses_as_soon_as_the_slots_are_busy() -> None:
    gate, _ = make_gate(slots=1, queue_size=0)
    async with gate.admit():
        with pytest.raises(QueueFull):
            async with gate.admit():
                pass
    async with gate.admit():
        pass


async def test_waiting_past_max_wait_is_model_unavailable() -> None:
    gate, rec = make_gate(slots=1, max_wait=0.02)
    async with gate.admit():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(ModelUnavailable) as info:
            async with gate.admit():
                pass
        assert loop.time() - t0 >= 0.015
        assert info.value.retry_after == pytest.approx(0.02)
        assert (gate.running, gate.waiting) == (1, 0)
    assert (gate.running, gate.waiting) == (0, 0)
    assert rec.seen[-3:] == [(1, 1), (1, 0), (0, 0)]


async def queue_two(gate: AdmissionGate) -> tuple[Any, asyncio.Task[None], asyncio.Task[None], list[str]]:
    """The gate's one slot held, and two workers, "a" then "b", waiting for it."""
    holder = gate.admit()
    await holder.__aenter__()
    admitted: list[str] = []

    async def worker(name: str) -> None:
        async with gate.admit():
            admitted.append(name)

    a = asyncio.create_task(worker("a"))
    await until(lambda: gate.waiting == 1)
    b = asyncio.create_task(worker("b"))
    await until(lambda: gate.waiting == 2)
    return holder, a, b, admitted


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    gate, _ = make_gate(slots=1)
    holder, a, b, admitted = await queue_two(gate)
    a.cancel()
    with pytest.raises(asyncio.CancelledError):
        await a
    assert gate.waiting == 1
    await holder.__aexit__(None, None, None)
    await b
    assert admitted == ["b"]
    assert (gate.running, gate.waiting) == (0, 0)


async def test_a_waiter_cancelled_just_after_being_handed_the_slot_passes_it_on() -> None:
    gate, _ = make_gate(slots=1)
    holder, a, b, admitted = await queue_two(gate)
    await holder.__aexit__(None, None, None)  # hands the slot to "a" ...
    a.cancel()  # ... which gives up before it could run
    with pytest.raises(asyncio.CancelledError):
        await a
    await b
    assert admitted == ["b"]
    assert (gate.running, gate.waiting) == (0, 0)


async def test_a_waiter_cancelled_just_after_being_handed_the_last_slot_frees_it() -> None:
    gate, _ = make_gate(slots=1)
    holder = gate.admit()
    await holder.__aenter__()
    a = asyncio.create_task(holding(gate).__aenter__())
    await until(lambda: gate.waiting == 1)
    await holder.__aexit__(None, None, None)
    a.cancel()
    with pytest.raises(asyncio.CancelledError):
        await a
    assert (gate.running, gate.waiting) == (0, 0)
    async with gate.admit():  # and the slot really is free
        assert gate.running == 1


async def test_counts_stay_exact_under_churn() -> None:
    """Hundreds of tasks that hold for a while, give up, time out or get cancelled:
    never more than `slots` inside, the reported counts always match, and at the end
    nothing is running or waiting."""
    rng = random.Random(42)
    slots = 3
    gate, rec = make_gate(slots=slots, queue_size=40, max_wait=0.02)
    inside = 0
    peak = 0
    outcomes: dict[str, int] = {"ok": 0, "full": 0, "timeout": 0, "cancelled": 0}

    async def worker() -> None:
        nonlocal inside, peak
        try:
            async with gate.admit():
                inside += 1
                try:
                    peak = max(peak, inside)
                    # a released slot may be on its way to a waiter that has not run yet
                    assert inside <= gate.running <= slots
                    for _ in range(rng.randint(0, 20)):
                        await asyncio.sleep(0)
                finally:
                    inside -= 1
            outcomes["ok"] += 1
        except QueueFull:
            outcomes["full"] += 1
        except ModelUnavailable:
            outcomes["timeout"] += 1

    tasks: list[asyncio.Task[None]] = []
    # First every slot is taken for longer than anyone may wait: the queue fills, the
    # rest are refused, and the whole queue times out.
    async with contextlib.AsyncExitStack() as blockers:
        for _ in range(slots):
            await blockers.enter_async_context(gate.admit())
        tasks += [asyncio.create_task(worker()) for _ in range(60)]
        await until(lambda: gate.waiting == 40)
        while gate.waiting:  # only a timeout can take a waiter off the queue now
            await asyncio.sleep(0.005)
    # Then churn: arrivals faster than the slots turn over, and cancellations at random.
    for i in range(340):
        tasks.append(asyncio.create_task(worker()))
        if i % 7 == 0:
            await asyncio.sleep(0)
        if i % 11 == 0:
            rng.choice(tasks).cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    outcomes["cancelled"] = sum(isinstance(r, asyncio.CancelledError) for r in results)
    assert not [r for r in results if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)]
    assert (gate.running, gate.waiting) == (0, 0)
    assert inside == 0
    assert peak == slots
    assert outcomes["timeout"] >= 40, outcomes  # the blocked queue, and maybe a few under load
    assert all(outcomes.values()), outcomes
    assert sum(outcomes.values()) == 400
    assert all(0 <= r <= slots and 0 <= w <= 40 for r, w in rec.seen)
    assert rec.seen[-1] == (0, 0)


async def test_admission_keeps_one_gate_per_model_and_reports_its_changes() -> None:
    changes: list[tuple[str, int, int]] = []
    admission = Admission(queue_size=4, max_wait=1.0, on_change=lambda m, r, w: changes.append((m, r, w)))
    a = admission.gate("a", 2)
    assert admission.gate("a", 2) is a
    b = admission.gate("b", 1)
    async with a.admit(), b.admit():
        assert (a.running, b.running) == (1, 1)
    assert changes == [("a", 1, 0), ("b", 1, 0), ("b", 0, 0), ("a", 0, 0)]
    assert admission.gates == [a, b]


async def test_a_gate_follows_the_slots_of_whatever_now_serves_the_id() -> None:
    admission = Admission(queue_size=4, max_wait=1.0, on_change=lambda m, r, w: None)
    gate = admission.gate("m", 1)
    assert admission.gate("m", 8) is gate
    assert gate.slots == 8
    async with gate.admit(), gate.admit():
        assert gate.running == 2


async def test_raising_the_slots_admits_the_waiters_at_once() -> None:
    admission = Admission(queue_size=8, max_wait=0.2, on_change=lambda m, r, w: None)
    gate = admission.gate("m", 1)
    async with gate.admit():
        waiters = [asyncio.create_task(holding(gate).__aenter__()) for _ in range(3)]
        await until(lambda: gate.waiting == 3)
        admission.gate("m", 8)  # e.g. the model fell back to the stub on reload
        try:
            await until(lambda: gate.waiting == 0, ticks=50)
            assert gate.running == 4
        finally:
            for t in waiters:
                t.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)


# --- requests of several choices (weights) ----------------------------------------------


async def test_a_request_of_several_choices_takes_that_many_slots() -> None:
    gate, _ = make_gate(slots=4)
    async with gate.admit(3):
        assert gate.running == 3
        async with gate.admit():
            assert gate.running == 4
    assert gate.running == 0


async def test_a_heavy_waiter_is_not_overtaken_by_lighter_ones() -> None:
    gate, _ = make_gate(slots=4)
    order: list[str] = []
    release = asyncio.Event()

    async def hold(name: str, weight: int) -> None:
        async with gate.admit(weight):
            order.append(name)
            await release.wait()

    first = asyncio.create_task(hold("two", 2))
    await until(lambda: gate.running == 2)
    heavy = asyncio.create_task(hold("three", 3))  # does not fit in the 2 free slots
    await until(lambda: gate.waiting == 1)
    light = asyncio.create_task(hold("one", 1))  # would fit, but must not jump the queue
    await until(lambda: gate.waiting == 2)
    assert order == ["two"]
    release.set()
    await asyncio.gather(first, heavy, light)
    assert order == ["two", "three", "one"]
    assert (gate.running, gate.waiting) == (0, 0)


async def test_a_heavy_waiter_giving_up_lets_the_next_in() -> None:
    gate, _ = make_gate(slots=2)
    release = asyncio.Event()

    async def hold(weight: int) -> None:
        async with gate.admit(weight):
            await release.wait()

    holder = asyncio.create_task(hold(1))
    await until(lambda: gate.running == 1)
    heavy = asyncio.create_task(hold(2))
    await until(lambda: gate.waiting == 1)
    light = asyncio.create_task(hold(1))
    await until(lambda: gate.waiting == 2)
    heavy.cancel()  # its client went away: the light one behind it fits in the free slot
    await until(lambda: gate.running == 2 and gate.waiting == 0)
    release.set()
    await asyncio.gather(holder, light)
    assert heavy.cancelled()
    assert (gate.running, gate.waiting) == (0, 0)


async def test_more_choices_than_slots_take_the_whole_gate() -> None:
    gate, _ = make_gate(slots=2)
    async with gate.admit(5):
        assert gate.running == 2
    assert gate.running == 0
