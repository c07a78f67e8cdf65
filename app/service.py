"""The service's parts, built from settings, started and stopped in the right order.

- ``ModelRegistry`` (app/registry.py): which model versions are served; load, warm up, switch, stop.
- ``Specs`` (app/specs.py): a request's values → an ``ImageSpec`` (or an ``ApiError``).
- ``Painter`` (app/painter.py): an ``ImageSpec`` → PNG bytes, through batcher and cache.
- ``RateLimiter`` (app/ratelimit.py): per-client token buckets, when rate limiting is on.
"""

from __future__ import annotations

from collections.abc import Callable

from app.cache import ImageCache, MemoryStore, RedisStore, Store
from app.metrics import Metrics
from app.painter import Painter
from app.ratelimit import RateLimiter
from app.registry import ModelRegistry
from app.settings import Settings
from app.specs import Specs


class ImageService:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        on_failure: Callable[[BaseException], None] = lambda exc: None,
    ) -> None:
        self.registry = ModelRegistry(settings, metrics, on_failure)
        self.specs = Specs(settings.max_size)
        self.cache = ImageCache(cache_store(settings), metrics)
        self.painter = Painter(self.cache, metrics, settings.png_compress_level)
        self.limiter = (
            RateLimiter(
                settings.rate_limit_per_s, settings.rate_limit_burst, self.cache.store, metrics
            )
            if settings.rate_limit_per_s > 0
            else None
        )

    async def start(self) -> None:
        await self.registry.start()

    async def stop(self) -> None:
        """Drain the batchers first (queued requests are served and may still write to
        the cache), then close the cache."""
        await self.registry.stop()
        await self.cache.close()


def cache_store(s: Settings) -> Store:
    if s.redis_url:
        return RedisStore(s.redis_url, s.cache_ttl_s, s.redis_timeout_s, s.redis_cooldown_s)
    return MemoryStore(s.cache_max_bytes)
