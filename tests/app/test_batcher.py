"""The batcher alone, with plain Python functions for run_batch (it knows nothing of torch)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from app.batcher import Batcher, Overloaded

from .conftest import eventually


class Recorder:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.delay_s = delay_s
        self.threads: set[str] = set()

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay_s)
        return [x * 10 for x in items]


async def test_concurrent_requests_share_a_batch_and_get_their_own_results() -> None:
    run = Recorder(delay_s=0.05)
    batcher = Batcher(run, max_batch_size=8, max_delay_ms=20, queue_size=100)
    await batcher.start()
    results = await asyncio.gather(*(batcher.submit(i) for i in range(20)))
    await batcher.stop()
    assert results == [i * 10 for i in range(20)]
    assert max(len(b) for b in run.batches) == 8
    assert len(run.batches) <= 4
    assert sorted(x for b in run.batches for x in b) == list(range(20))
    assert len(run.threads) == 1 and threading.current_thread().name not in run.threads


class Gate:
    """A run_batch that holds each batch until the test opens the gate (``hold_s`` at most)."""

    def __init__(self, hold_s: float = 10) -> None:
        self.hold_s = hold_s
        self.running, self.open = threading.Event(), threading.Event()
        self.opened_in_time: list[bool] = []
        self.batches: list[list[int]] = []

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.running.set()
        self.opened_in_time.append(self.open.wait(self.hold_s))
        return [x * 10 for x in items]


async def test_a_full_queue_is_refused_at_once() -> None:
    gate = Gate()
    batcher = Batcher(gate, max_batch_size=1, max_delay_ms=0, queue_size=2)
    await batcher.start()
    first = asyncio.create_task(batcher.submit(1))
    await eventually(gate.running.is_set, "the first batch runs")  # the queue is empty again
    waiting = [asyncio.create_task(batcher.submit(i)) for i in (2, 3)]
    await eventually(lambda: batcher.depth == 2, "two requests queued")
    refused = batcher.submit(4)
    with pytest.raises(Overloaded) as error:
        refused.send(None)  # its first step: refused without waiting for anything
    assert error.value.reason == "queue_full"
    gate.open.set()
    assert await asyncio.wait_for(first, 10) == 10
    assert await asyncio.wait_for(asyncio.gather(*waiting), 10) == [20, 30]
    await batcher.stop()


async def test_requests_past_their_deadline_are_dropped_not_run() -> None:
    gate = Gate()
    batcher = Batcher(gate, max_batch_size=1, max_delay_ms=0, queue_size=10, timeout_s=0.1)
    await batcher.start()
    first = asyncio.create_task(batcher.submit(1))
    await eventually(gate.running.is_set, "the first batch runs")
    with pytest.raises(Overloaded) as late:  # its deadline passes while it is queued
        await asyncio.wait_for(batcher.submit(2), 10)
    assert late.value.reason == "deadline"
    gate.open.set()
    with pytest.raises(Overloaded, match="no result within"):
        await asyncio.wait_for(first, 10)  # its batch outlived the deadline too
    await asyncio.wait_for(batcher.stop(), 10)
    assert gate.batches == [[1]]


async def test_a_failing_batch_fails_every_request_in_it_and_the_batcher_goes_on() -> None:
    calls = 0

    def flaky(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("device fell over")
        return items

    batcher = Batcher(flaky, max_batch_size=4, max_delay_ms=20, queue_size=10)
    await batcher.start()
    failed = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(f, RuntimeError) for f in failed)
    assert await batcher.submit(7) == 7
    await batcher.stop()


async def test_a_wrong_number_of_results_is_an_error_not_a_mixup() -> None:
    batcher = Batcher(lambda items: items[:-1], max_batch_size=4, max_delay_ms=20, queue_size=10)
    await batcher.start()
    results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    await batcher.stop()


async def test_stop_serves_what_is_queued_then_refuses() -> None:
    run = Recorder(delay_s=0.02)
    batcher = Batcher(run, max_batch_size=2, max_delay_ms=0, queue_size=10)
    await batcher.start()
    tasks = [asyncio.create_task(batcher.submit(i)) for i in range(5)]
    await asyncio.sleep(0)
    await batcher.stop()
    assert [await t for t in tasks] == [0, 10, 20, 30, 40]
    with pytest.raises(Overloaded, match="shutting down"):
        await batcher.submit(9)


async def test_idle_means_nothing_queued_nor_running_and_a_stopped_batcher_is_idle() -> None:
    """Painting ahead (app/pool.py) waits for idle: a batcher stopped while it waits (an
    old version unloaded) must release it, not hold it for ever."""
    may_run = threading.Event()
    batcher = Batcher(lambda items: may_run.wait(10) and items, 4, 0, 10)
    await batcher.start()
    await asyncio.wait_for(batcher.wait_idle(), 5)  # started, nothing queued
    held = asyncio.create_task(batcher.submit(1))
    waiter = asyncio.create_task(batcher.wait_idle())
    await asyncio.sleep(0.05)
    assert not waiter.done()  # a batch runs
    may_run.set()
    assert await held == 1
    await asyncio.wait_for(waiter, 5)
    may_run.clear()
    held = asyncio.create_task(batcher.submit(2))
    await eventually(lambda: batcher._running_since is not None, "the batch never ran")
    waiter = asyncio.create_task(batcher.wait_idle())
    stopping = asyncio.create_task(batcher.stop())
    may_run.set()
    await asyncio.wait_for(stopping, 5)
    assert await held == 2
    await asyncio.wait_for(waiter, 5)  # stopped: released
    await asyncio.wait_for(batcher.wait_idle(), 5)


async def test_the_event_loop_keeps_turning_while_a_batch_runs() -> None:
    gate = Gate()  # a forward pass that lasts until the event loop ends it
    batcher = Batcher(gate, max_batch_size=4, max_delay_ms=0, queue_size=10)
    await batcher.start()
    pending = asyncio.create_task(batcher.submit(1))
    await eventually(gate.running.is_set, "the batch runs")
    for _ in range(10):  # the loop turns while the batch is still running...
        await asyncio.sleep(0)
    assert not pending.done()
    gate.open.set()  # ...and it is the loop that lets the batch finish
    assert await asyncio.wait_for(pending, 10) == 10
    await batcher.stop()
    # Had the batch run on the loop's thread, the gate would have timed out instead.
    assert gate.opened_in_time == [True]


class FailingObserver:
    """A metrics observer with a bug in one of its methods."""

    def __init__(self, failing: str) -> None:
        self.failing = failing

    def _call(self, name: str) -> None:
        if name == self.failing:
            raise RuntimeError(f"{name} is broken")

    def queue_depth(self, depth: int) -> None:
        self._call("queue_depth")

    def batch(self, size: int, queue_wait_s: list[float], run_s: float) -> None:
        self._call("batch")

    def rejected(self, reason: str) -> None:
        self._call("rejected")


@pytest.mark.parametrize("failing", ["queue_depth", "rejected", "batch"])
async def test_an_observer_that_raises_stops_neither_the_batcher_nor_its_requests(
    failing: str,
) -> None:
    gate = Gate()
    batcher = Batcher(
        gate, max_batch_size=1, max_delay_ms=0, queue_size=1, observer=FailingObserver(failing)
    )
    await batcher.start()
    first = asyncio.create_task(batcher.submit(1))
    await eventually(gate.running.is_set, "the first batch runs")
    queued = asyncio.create_task(batcher.submit(2))
    await eventually(lambda: batcher.depth == 1, "one request queued")
    with pytest.raises(Overloaded) as full:  # refused as overloaded, not with the bug
        await asyncio.wait_for(batcher.submit(3), 10)
    assert full.value.reason == "queue_full"
    gate.open.set()
    assert await asyncio.wait_for(asyncio.gather(first, queued), 10) == [10, 20]
    assert await asyncio.wait_for(batcher.submit(4), 10) == 40  # the loop goes on
    await asyncio.wait_for(batcher.stop(), 10)


async def test_a_hung_batch_fails_its_requests_at_their_deadline_and_says_so() -> None:
    gate = Gate()  # a forward pass that never returns until the test says so
    batcher = Batcher(gate, max_batch_size=4, max_delay_ms=0, queue_size=10, timeout_s=0.2)
    await batcher.start()
    assert batcher.health() is None
    with pytest.raises(Overloaded) as late:  # answered while the thread is still stuck
        await asyncio.wait_for(batcher.submit(1), 10)
    assert late.value.reason == "deadline" and not gate.open.is_set()
    # The thread cannot be killed: the batcher says it is stuck until the batch returns.
    await eventually(lambda: batcher.health() is not None, "the batcher reports the hang")
    assert "has run for" in str(batcher.health())
    gate.open.set()
    await eventually(lambda: batcher.health() is None, "the batcher recovers")
    assert await asyncio.wait_for(batcher.submit(2), 10) == 20
    await asyncio.wait_for(batcher.stop(), 10)


async def test_a_bug_in_the_loop_fails_only_the_batch_in_hand(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batcher = Batcher(Recorder(), max_batch_size=4, max_delay_ms=0, queue_size=10)
    drop_expired = batcher._drop_expired
    calls = 0

    def broken_once(batch: list) -> list:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyError("a bug")
        return drop_expired(batch)

    monkeypatch.setattr(batcher, "_drop_expired", broken_once)
    await batcher.start()
    with pytest.raises(KeyError):
        await asyncio.wait_for(batcher.submit(1), 10)
    assert await asyncio.wait_for(batcher.submit(2), 10) == 20
    assert batcher.health() is None
    await asyncio.wait_for(batcher.stop(), 10)


async def test_stop_does_not_wait_for_ever_on_a_hung_batch() -> None:
    gate = Gate(hold_s=60)  # longer than any deadline below
    batcher = Batcher(gate, max_batch_size=1, max_delay_ms=0, queue_size=10, timeout_s=0.2)
    await batcher.start()
    requests = [asyncio.create_task(batcher.submit(i)) for i in (1, 2)]
    await eventually(gate.running.is_set, "the first batch runs")
    try:
        await asyncio.wait_for(batcher.stop(), 5)  # returns though the batch still hangs
        outcomes = await asyncio.wait_for(asyncio.gather(*requests, return_exceptions=True), 10)
        assert [getattr(o, "reason", o) for o in outcomes] == ["deadline", "deadline"]
        assert not gate.open.is_set() and gate.batches == [[1]]
    finally:
        gate.open.set()  # let the stuck thread end, for the test process's sake
