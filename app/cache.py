"""Cache-aside for deterministic images: Redis when configured, else an in-process LRU.

A cache must never make the service worse: Redis calls have short timeouts and no
retries, and after any error (not only Redis' own) Redis is skipped (a small circuit
breaker) while a background probe waits for it to answer again. Concurrent requests for
the same key in one process paint once (single-flight); replicas do not coordinate, so
two processes may each paint an image once before one of them has stored it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Protocol

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from app.metrics import Metrics

log = logging.getLogger("app.cache")


class Store(Protocol):
    available: bool  # False while a failing backend is being skipped

    def trip(self, exc: Exception) -> None: ...
    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes) -> None: ...
    async def close(self) -> None: ...


class MemoryStore:
    """LRU bounded by the total bytes of its values."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.bytes = max_bytes, 0
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self.available = True

    def trip(self, exc: Exception) -> None:
        raise exc  # memory does not fail like a network service; a bug should be seen

    async def get(self, key: str) -> bytes | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        old = self._items.pop(key, None)
        self.bytes += len(value) - (len(old) if old else 0)
        self._items[key] = value
        while self.bytes > self.max_bytes:
            _, evicted = self._items.popitem(last=False)
            self.bytes -= len(evicted)

    async def close(self) -> None:
        self._items.clear()


class RedisStore:
    def __init__(self, url: str, ttl_s: int, timeout_s: float, cooldown_s: float) -> None:
        self.redis = Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),  # redis-py retries by default: a hung Redis stalls
            retry_on_timeout=False,
            health_check_interval=0,
        )
        self.ttl_s, self.cooldown_s = ttl_s, cooldown_s
        self.open_until = 0.0  # circuit breaker: skip Redis until then
        self._probe: asyncio.Task[None] | None = None

    @property
    def available(self) -> bool:
        return time.monotonic() >= self.open_until and self._probe is None

    def trip(self, exc: Exception) -> None:
        expected = isinstance(exc, RedisError | OSError)  # else a bug: show its traceback
        log.warning(
            "redis unavailable (%s); serving uncached for now",
            type(exc).__name__,
            exc_info=None if expected else exc,
        )
        self.open_until = time.monotonic() + self.cooldown_s
        if self._probe is None:
            self._probe = asyncio.create_task(self._wait_for_redis())

    async def _wait_for_redis(self) -> None:
        while True:
            await asyncio.sleep(max(self.open_until - time.monotonic(), 0.0))
            try:
                await self.redis.ping()
            except Exception as exc:  # whatever it is, the probe must go on probing
                if not isinstance(exc, RedisError | OSError):
                    log.warning("redis probe failed unexpectedly", exc_info=exc)
                self.open_until = time.monotonic() + self.cooldown_s
                continue
            log.info("redis is back")
            self._probe = None
            return

    async def get(self, key: str) -> bytes | None:
        return await self.redis.get(key)

    async def set(self, key: str, value: bytes) -> None:
        await self.redis.set(key, value, ex=self.ttl_s)

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
        await self.redis.aclose()


class ImageCache:
    def __init__(self, store: Store, metrics: Metrics) -> None:
        self.store, self.metrics = store, metrics
        if isinstance(store, MemoryStore):
            metrics.cache_bytes.set_function(lambda: store.bytes)
        self._inflight: dict[str, asyncio.Task[tuple[bytes, bool]]] = {}
        self._waiters: dict[asyncio.Task[tuple[bytes, bool]], int] = {}

    async def get_or_create(
        self, key: str, create: Callable[[], Awaitable[bytes]]
    ) -> tuple[bytes, bool]:
        """(bytes, was it a hit). Identical concurrent misses share one ``create``."""
        cached = await self._get(key)
        if cached is not None:
            return cached, True
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._create_and_store(key, create))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        # Shielded: a caller that goes away (its client left: app/middleware.py) cancels
        # the painting only when no one else waits for it.
        self._waiters[task] = self._waiters.get(task, 0) + 1
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if self._waiters[task] == 1:
                task.cancel()
            raise
        finally:
            self._waiters[task] -= 1
            if not self._waiters[task]:
                del self._waiters[task]

    async def _create_and_store(
        self, key: str, create: Callable[[], Awaitable[bytes]]
    ) -> tuple[bytes, bool]:
        # Look again, now that this key is in _inflight: another task may have painted and
        # stored it, and left _inflight, while our first lookup was on its way (a Redis
        # round trip). A miss here is final: whoever comes next joins this task, and a
        # task leaves _inflight only after its value is stored.
        again = await self._get(key, count=False)
        if again is not None:
            return again, True
        value = await create()
        await self._set(key, value)
        return value, False

    def _forget(self, key: str, task: asyncio.Task[tuple[bytes, bool]]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved here: its waiters re-raise it, or nobody waited

    async def _get(self, key: str, count: bool = True) -> bytes | None:
        """The stored value; None on a miss or any error (counted in the metrics when
        ``count``: once per request, not for the second look of a miss)."""
        if not self.store.available:
            result, value = "bypass", None
        else:
            try:
                value = await self.store.get(key)
                result = "hit" if value is not None else "miss"
            except Exception as exc:  # not only RedisError: a cache never fails a request
                result, value = "error", None
                self.store.trip(exc)
        if count:
            self.metrics.cache_lookups.labels(result).inc()
        return value

    async def _set(self, key: str, value: bytes) -> None:
        if not self.store.available:
            return
        try:
            await self.store.set(key, value)
        except Exception as exc:
            self.store.trip(exc)

    async def close(self) -> None:
        await self.store.close()
