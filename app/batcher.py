"""Dynamic batching: many concurrent requests, one forward pass.

Knows nothing about torch. ``run_batch`` is any synchronous function from a list of
requests to a list of results; it runs on one dedicated thread, so the event loop never
blocks on the model. One async consumer collects up to ``max_batch_size`` requests or
until ``max_delay_ms`` has passed since the first one arrived.

``submit_many`` hands in a group (the frames of one animation, the tiles of one grid):
N requests count as N against ``queue_size``, and a group that fits ``max_batch_size``
runs in one batch, never split by other requests (a larger one in as few as fit).

Every request is answered within ``timeout_s`` of its submission: with its result, its
batch's error, or ``Overloaded("deadline")``, even while ``run_batch`` is stuck. A stuck
thread cannot be killed from Python; the batcher says so (``health``) until it returns.
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
    """Requests that enter one batch together (one, or a chunk of a group)."""

    items: list[Req]
    future: asyncio.Future[list[Res]]
    enqueued: float = field(default_factory=time.monotonic)
    batch_size: int = 0  # rows in the batch it ran in


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
        self._queued = 0  # requests (not groups) waiting: what queue_size limits
        self._carry: _Pending[Req, Res] | None = None  # did not fit the last batch: next
        self._closed = False
        self._running_since: float | None = None  # when the batch now running started
        self._idle = asyncio.Event()  # nothing queued, no batch running

    async def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Serve what is queued, then stop; later submissions are refused.

        Waits at most ``timeout_s`` (by then every queued request has had its answer, if
        only its deadline's 503). A batch still running then is left to its thread, which
        cannot be killed: the process exits when it returns, or when it is killed."""
        self._closed = True
        if self._worker is not None:
            self._queue.put_nowait(None)
            try:
                await asyncio.wait_for(asyncio.shield(self._worker), self.timeout_s)
            except TimeoutError:
                log.error(
                    "%s: a batch is still running after %g s; not waiting for it",
                    self.name,
                    self.timeout_s,
                )
                self._worker.cancel()
                self._thread.shutdown(wait=False, cancel_futures=True)
                return
        self._thread.shutdown(wait=True)

    @property
    def depth(self) -> int:
        """Requests waiting for a batch."""
        return self._queued

    async def wait_idle(self) -> None:
        """Until nothing is queued and no batch runs, or the batcher has stopped (work that
        should not delay any request, such as painting ahead: app/pool.py, waits for
        this)."""
        await self._idle.wait()

    @property
    def closed(self) -> bool:
        """Stopping or stopped: new requests are refused."""
        return self._closed

    @property
    def alive(self) -> bool:
        """False once the consumer loop has ended without being stopped (a bug)."""
        return self._closed or self._worker is None or not self._worker.done()

    def health(self) -> str | None:
        """None when healthy, else what is wrong (a batch past the deadline, a dead loop)."""
        if not self.alive:
            return f"{self.name}: its loop has stopped"
        started = self._running_since
        if started is not None and time.monotonic() - started > self.timeout_s:
            return f"{self.name}: a batch has run for {time.monotonic() - started:.0f} s"
        return None

    async def submit(self, item: Req, on_batch: Callable[[int], None] | None = None) -> Res:
        return (await self.submit_many([item], on_batch))[0]

    async def submit_many(
        self, items: Sequence[Req], on_batch: Callable[[int], None] | None = None
    ) -> list[Res]:
        """Results for ``items`` in order; all or nothing (one error fails the group).
        ``on_batch`` hears the size of the batch they ran in (the first, if several)."""
        if not items:
            return []
        if self._closed:
            raise self._reject("shutdown", "the service is shutting down")
        if self._queued + len(items) > self.queue_size:
            waiting = f"{self._queued} of {self.queue_size} requests are already waiting"
            raise self._reject("queue_full", f"{waiting}; this needs {len(items)}")
        loop = asyncio.get_running_loop()
        size = self.max_batch_size
        chunks = [list(items[i : i + size]) for i in range(0, len(items), size)]
        group = [_Pending(chunk, loop.create_future()) for chunk in chunks]
        for pending in group:
            self._queue.put_nowait(pending)
        self._idle.clear()
        self._queued += len(items)
        self._notify("queue_depth", self._queued)
        # A timer, not wait_for: no task per request. It answers the request at its
        # deadline whatever the consumer is doing (queued, or its batch still running).
        deadlines = [loop.call_later(self.timeout_s, self._expire, p) for p in group]
        try:
            # gather: the first error fails the group, and the others' are retrieved.
            parts = await asyncio.gather(*(p.future for p in group))
        finally:
            for deadline in deadlines:
                deadline.cancel()
        if on_batch is not None:
            on_batch(group[0].batch_size)
        return [result for part in parts for result in part]

    def _expire(self, pending: _Pending[Req, Res]) -> None:
        if not pending.future.done():
            message = f"no result within {self.timeout_s:g} s"
            pending.future.set_exception(self._reject("deadline", message))

    def _reject(self, reason: str, message: str) -> Overloaded:
        self._notify("rejected", reason)
        return Overloaded(reason, message)

    def _notify(self, event: str, *args: object) -> None:
        """Tell the observer; a metrics bug must neither stop the loop nor fail a request."""
        if self.observer is None:
            return
        try:
            getattr(self.observer, event)(*args)
        except Exception:
            log.exception("batch observer failed on %s", event)

    async def _collect(self, first: _Pending[Req, Res]) -> tuple[list[_Pending[Req, Res]], bool]:
        """The batch starting with ``first``; True as second value if the stop mark came.
        A group that does not fit is kept for the next batch, which it starts."""
        batch, rows, stopping = [first], len(first.items), False
        until = time.monotonic() + self.max_delay_s
        while rows < self.max_batch_size and not stopping:
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
                stopping = True
            elif rows + len(item.items) > self.max_batch_size:
                self._carry = item  # a group is never split across batches: it goes next
                break
            else:
                batch.append(item)
                rows += len(item.items)
        self._queued -= rows
        return batch, stopping

    async def _run(self) -> None:
        stopping = False
        while not stopping or self._carry is not None:
            first, self._carry = self._carry, None
            if first is None:
                if self._queue.empty():
                    self._idle.set()
                first = await self._queue.get()
                self._idle.clear()
                if first is None:
                    break
            batch = [first]
            try:
                batch, stopping = await self._collect(first)
                self._notify("queue_depth", self._queued)
                live = self._drop_expired(batch)
                if live:
                    await self._serve(live)
            except Exception as exc:  # a bug here must not stop the loop: later requests
                log.exception("%s: batch failed outside run_batch", self.name)  # would wait
                self._fail(batch, exc)
        self._idle.set()  # stopped: nothing will run again, so nobody waits for it

    def _drop_expired(self, batch: list[_Pending[Req, Res]]) -> list[_Pending[Req, Res]]:
        """The requests still worth running: not expired (the timer answered them), not
        abandoned (their awaiting task was cancelled: in the service, because the client
        went away; app/middleware.py ``CancelOnDisconnect`` does that, Starlette does not)."""
        for p in batch:
            if p.future.cancelled():
                for _ in p.items:
                    self._notify("rejected", "abandoned")
        return [p for p in batch if not p.future.done()]

    async def _serve(self, live: list[_Pending[Req, Res]]) -> None:
        """Run one batch; every request gets its own result, or all learn of the failure."""
        started = self._running_since = time.monotonic()
        items = [item for p in live for item in p.items]
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self._thread, self.run_batch, items
            )
            if len(results) != len(items):
                raise RuntimeError(f"run_batch gave {len(results)} results for {len(items)}")
        except Exception as exc:
            self._fail(live, exc)
            return
        finally:
            self._running_since = None
        offset = 0
        for p in live:
            p.batch_size = len(items)
            if not p.future.done():  # not expired while the batch ran
                p.future.set_result(list(results[offset : offset + len(p.items)]))
            offset += len(p.items)
        waits = [started - p.enqueued for p in live for _ in p.items]
        self._notify("batch", len(items), waits, time.monotonic() - started)

    @staticmethod
    def _fail(batch: list[_Pending[Req, Res]], exc: Exception) -> None:
        for p in batch:
            if not p.future.done():
                p.future.set_exception(exc)
