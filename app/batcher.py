"""Dynamic batching: many concurrent requests, one forward pass.

Knows nothing about torch. ``run_batch`` is any synchronous function from a list of
requests to a list of results; it runs on one dedicated thread, so the event loop never
blocks on the model. One async consumer collects up to ``max_batch_size`` requests or
until ``max_delay_ms`` has passed since the first one arrived.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

log = logging.getLogger("app.batcher")
Req = TypeVar("Req")
Res = TypeVar("Res")


class Overloaded(Exception):
    """The request cannot be served now: the queue is full, its deadline passed, or the
    service is warming up or shutting down. Answered 503 with Retry-After."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class BatchObserver(Protocol):
    def queue_depth(self, depth: int) -> None: ...
    def batch(self, size: int, queue_wait_s: list[float], run_s: float) -> None: ...
    def rejected(self, reason: str) -> None: ...


@dataclass
class _Pending(Generic[Req, Res]):
    item: Req
    future: asyncio.Future[Res]
    enqueued: float = field(default_factory=time.monotonic)
    deadline: float = 0.0


class Batcher(Generic[Req, Res]):
    def __init__(
        self,
        run_batch: Callable[[list[Req]], Sequence[Res]],
        max_batch_size: int,
        max_delay_ms: float,
        queue_size: int,
        *,
        timeout_s: float = 10.0,
        observer: BatchObserver | None = None,
        name: str = "batcher",
    ) -> None:
        self.run_batch = run_batch
        self.max_batch_size, self.max_delay_s = max_batch_size, max_delay_ms / 1000
        self.queue_size, self.timeout_s = queue_size, timeout_s
        self.observer, self.name = observer, name
        self._queue: asyncio.Queue[_Pending[Req, Res] | None] = asyncio.Queue()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._worker: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Serve what is queued, then stop; later submissions are refused."""
        self._closed = True
        if self._worker is not None:
            self._queue.put_nowait(None)
            await self._worker
        self._thread.shutdown(wait=True)

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    @property
    def closed(self) -> bool:
        """Stopping or stopped: new requests are refused."""
        return self._closed

    async def submit(self, item: Req) -> Res:
        if self._closed:
            raise self._reject("shutdown", "the service is shutting down")
        if self._queue.qsize() >= self.queue_size:
            raise self._reject("queue_full", f"{self.queue_size} requests are already waiting")
        pending: _Pending[Req, Res] = _Pending(item, asyncio.get_running_loop().create_future())
        pending.deadline = pending.enqueued + self.timeout_s
        self._queue.put_nowait(pending)
        self._observe_depth()
        return await pending.future

    def _reject(self, reason: str, message: str) -> Overloaded:
        if self.observer:
            self.observer.rejected(reason)
        return Overloaded(reason, message)

    def _observe_depth(self) -> None:
        if self.observer:
            self.observer.queue_depth(self._queue.qsize())

    async def _collect(self, first: _Pending[Req, Res]) -> tuple[list[_Pending[Req, Res]], bool]:
        """The batch starting with ``first``; True as second value if the stop mark came."""
        batch, until = [first], time.monotonic() + self.max_delay_s
        while len(batch) < self.max_batch_size:
            if self._queue.empty():
                left = until - time.monotonic()
                if left <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), left)
                except TimeoutError:
                    break
            else:
                item = self._queue.get_nowait()
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            batch, stopping = await self._collect(first)
            self._observe_depth()
            live = self._drop_expired(batch)
            if live:
                await self._serve(live)

    def _drop_expired(self, batch: list[_Pending[Req, Res]]) -> list[_Pending[Req, Res]]:
        """The requests still worth running: not abandoned, not past their deadline."""
        now, live = time.monotonic(), []
        for p in batch:
            if p.future.done():  # the client went away
                continue
            if now > p.deadline:
                reason = f"waited over {self.timeout_s:g} s in the queue"
                p.future.set_exception(self._reject("deadline", reason))
                continue
            live.append(p)
        return live

    async def _serve(self, live: list[_Pending[Req, Res]]) -> None:
        """Run one batch; every request gets its own result, or all learn of the failure.
        Nothing raised here may stop the loop: later requests would wait for ever."""
        started = time.monotonic()
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self._thread, self.run_batch, [p.item for p in live]
            )
            if len(results) != len(live):
                raise RuntimeError(f"run_batch gave {len(results)} results for {len(live)}")
        except Exception as exc:
            for p in live:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        for p, result in zip(live, results, strict=True):
            if not p.future.done():
                p.future.set_result(result)
        if self.observer:
            waits = [started - p.enqueued for p in live]
            try:
                self.observer.batch(len(live), waits, time.monotonic() - started)
            except Exception:  # a metrics bug must not stop the batcher
                log.exception("batch observer failed")
