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
    """A run_batch that holds each batch until the test opens the gate (10 s at most)."""

    def __init__(self) -> None:
        self.running, self.open = threading.Event(), threading.Event()
        self.opened_in_time: list[bool] = []

    def __call__(self, items: list[int]) -> list[int]:
        self.running.set()
        self.opened_in_time.append(self.open.wait(10))
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
    run = Recorder(delay_s=0.3)
    batcher = Batcher(run, max_batch_size=1, max_delay_ms=0, queue_size=10, timeout_s=0.1)
    await batcher.start()
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0.01)
    with pytest.raises(Overloaded) as late:
        await batcher.submit(2)
    assert late.value.reason == "deadline"
    assert await first == 10
    await batcher.stop()
    assert run.batches == [[1]]


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
