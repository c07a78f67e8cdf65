"""The service's parts, built from settings, started and stopped in the right order.

- ``ModelRegistry`` (app/registry.py): which model versions are served; load, warm up, switch, stop.
- ``Specs`` (app/specs.py): a request's values → an ``ImageSpec`` (or an ``ApiError``).
- ``Painter`` (app/painter.py): an ``ImageSpec`` → PNG bytes, through batcher and cache.
- ``RateLimiter`` (app/ratelimit.py): per-client token buckets, when rate limiting is on.
- ``RandomPool`` (app/pool.py): ``/random`` images painted ahead, when the pool is on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from app.cache import ImageCache, MemoryStore, RedisStore, Store
from app.metrics import Metrics
from app.painter import Painter
from app.pool import RandomPool
from app.ratelimit import RateLimiter
from app.registry import ModelRegistry
from app.settings import Settings
from app.specs import Specs
from app.workers import WorkerSlots

PUBLISH_READINESS_S = 0.25  # how often a worker tells the others whether it is ready


class ImageService:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        on_failure: Callable[[BaseException], None] = lambda exc: None,
        workers: WorkerSlots | None = None,
    ) -> None:
        self.workers = workers
        self._publisher: asyncio.Task[None] | None = None
        self.registry = ModelRegistry(settings, metrics, on_failure)
        self.specs = Specs(settings.max_size)
        self.cache = ImageCache(cache_store(settings), metrics)
        self.painter = Painter(self.cache, metrics, settings.png_compress_level)
        self.pool = (
            RandomPool(
                self.registry,
                self.specs,
                self.painter,
                metrics,
                settings.random_pool,
                settings.random_pool_bytes,
                settings.pool_batch(),
            )
            if settings.random_pool
            else None
        )
        self.limiter = (
            RateLimiter(
                settings.rate_limit_per_s, settings.rate_limit_burst, self.cache.store, metrics
            )
            if settings.rate_limit_per_s > 0
            else None
        )

    async def start(self) -> None:
        if self.workers is not None:
            self._publisher = asyncio.create_task(self._publish_readiness())
        await self.registry.start()
        if self.pool is not None and self.registry.ready:
            self.pool.start()

    async def stop(self) -> None:
        """Unready first (the other workers' /readyz say so), then drain the batchers
        (queued requests are served and may still write to the cache), close the cache."""
        if self._publisher is not None:
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher
        if self.workers is not None:
            self.workers.publish(False)
        if self.pool is not None:
            await self.pool.stop()
        await self.registry.stop()
        await self.cache.close()

    def own_readiness(self) -> tuple[str, int] | None:
        """None when this process can serve; else why not, and the Retry-After seconds."""
        r = self.registry
        if r.failure:
            # The details name server paths: they go to the log, not to clients.
            return "start-up failed; the service log says why", 60
        if not r.ready:
            return "warming up", 1
        if problems := r.problems():
            return "; ".join(problems), 1
        return None

    def readiness(self) -> tuple[str, int] | None:
        """As ``own_readiness``, for the whole replica: with several workers, all ready."""
        if (problem := self.own_readiness()) is not None:
            return problem
        if self.workers is not None and (waiting := self.workers.not_ready()):
            names = ", ".join(str(i) for i in waiting)
            return f"worker {names} of {len(self.workers)} not ready", 1
        return None

    async def _publish_readiness(self) -> None:
        while True:
            self.workers.publish(self.own_readiness() is None)  # type: ignore[union-attr]
            await asyncio.sleep(PUBLISH_READINESS_S)


def cache_store(s: Settings) -> Store:
    if s.redis_url:
        return RedisStore(s.redis_url, s.cache_ttl_s, s.redis_timeout_s, s.redis_cooldown_s)
    return MemoryStore(s.cache_max_bytes)
