"""Groups of requests (an animation's frames, a grid's tiles) through the batcher."""

from __future__ import annotations

import asyncio

import pytest

from app.batcher import Batcher, Overloaded

from .conftest import eventually
from .test_batcher import Gate


async def held(**options: int) -> tuple[Gate, Batcher, asyncio.Task]:
    """A batcher whose first batch (request 0) is running and held at the gate."""
    gate = Gate()
    batcher = Batcher(gate, **options)
    await batcher.start()
    blocker = asyncio.create_task(batcher.submit(0))
    await eventually(gate.running.is_set, "the first batch runs")
    return gate, batcher, blocker


async def test_a_group_that_fits_runs_in_one_batch_never_split_by_others() -> None:
    gate, batcher, blocker = await held(max_batch_size=4, max_delay_ms=50, queue_size=100)
    singles = [asyncio.create_task(batcher.submit(i)) for i in (1, 2)]
    group = asyncio.create_task(batcher.submit_many([100, 101, 102]))
    after = asyncio.create_task(batcher.submit(3))
    await eventually(lambda: batcher.depth == 6, "six requests queued")
    gate.open.set()
    assert await asyncio.wait_for(group, 10) == [1000, 1010, 1020]
    await asyncio.wait_for(asyncio.gather(blocker, *singles, after), 10)
    await batcher.stop()
    # 1 and 2 leave no room for three more in a batch of 4: the group goes next, whole.
    assert gate.batches[1] == [1, 2]
    assert gate.batches[2][:3] == [100, 101, 102]
    assert batcher.depth == 0


async def test_a_group_counts_each_request_against_the_queue_limit() -> None:
    gate, batcher, blocker = await held(max_batch_size=8, max_delay_ms=0, queue_size=4)
    waiting = asyncio.create_task(batcher.submit_many([1, 2]))
    await eventually(lambda: batcher.depth == 2, "two requests queued")
    with pytest.raises(Overloaded, match="this needs 3") as error:
        await batcher.submit_many([3, 4, 5])
    assert error.value.reason == "queue_full"
    fits = asyncio.create_task(batcher.submit_many([6, 7]))
    gate.open.set()
    assert await asyncio.wait_for(asyncio.gather(blocker, waiting, fits), 10) == [
        0,
        [10, 20],
        [60, 70],
    ]
    await batcher.stop()


async def test_a_group_larger_than_a_batch_runs_in_as_few_as_fit_in_order() -> None:
    gate = Gate()
    gate.open.set()
    batcher = Batcher(gate, max_batch_size=4, max_delay_ms=0, queue_size=100)
    await batcher.start()
    assert await batcher.submit_many(list(range(10))) == [x * 10 for x in range(10)]
    await batcher.stop()
    assert gate.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


async def test_one_failing_part_fails_the_whole_group() -> None:
    def run(items: list[int]) -> list[int]:
        if 5 in items:
            raise RuntimeError("bad frame")
        return items

    batcher = Batcher(run, max_batch_size=4, max_delay_ms=0, queue_size=100)
    await batcher.start()
    with pytest.raises(RuntimeError, match="bad frame"):
        await batcher.submit_many(list(range(8)))
    assert await batcher.submit(1) == 1  # the batcher itself goes on
    await batcher.stop()


async def test_stop_serves_a_group_left_over_from_the_last_batch() -> None:
    gate, batcher, blocker = await held(max_batch_size=2, max_delay_ms=50, queue_size=100)
    single = asyncio.create_task(batcher.submit(1))
    group = asyncio.create_task(batcher.submit_many([2, 3]))
    await eventually(lambda: batcher.depth == 3, "three requests queued")
    stopping = asyncio.create_task(batcher.stop())
    gate.open.set()
    assert await asyncio.wait_for(asyncio.gather(blocker, single, group), 10) == [0, 10, [20, 30]]
    await stopping
