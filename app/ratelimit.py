"""Optional rate limiting per client on the generation routes: a token bucket per client.

Off unless DNE_RATE_LIMIT_PER_S is set. Each client (app/clients.py) has a bucket of
DNE_RATE_LIMIT_BURST tokens, refilled at DNE_RATE_LIMIT_PER_S; a request takes one, and
with none left it gets 429 and ``Retry-After`` (the seconds until one is back).

The buckets live in the cache's Redis when there is one, so every replica draws from the
same bucket: one atomic script per request, timed by Redis' own clock (replicas' clocks
may disagree). Without Redis they live in this process. Limiting must never take the
service down: while Redis is failing (the cache's breaker is open) requests are let
through, and counted (``dne_rate_limit_total{result="unchecked"}``).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict

from app.cache import RedisStore, Store
from app.metrics import Metrics

# KEYS[1]: the client's bucket; ARGV: rate per second, burst. Returns the seconds to wait
# as a string (Redis turns Lua numbers into integers), "0" when a token was taken.
TOKEN_BUCKET = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or t
tokens = math.min(burst, tokens + math.max(0, t - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(t))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""
MAX_LOCAL_CLIENTS = 100_000  # buckets kept in process; the least recent are dropped


class TokenBuckets:
    """The same bucket in process memory, for a service without Redis."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate, self.burst = rate_per_s, burst
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def take(self, client: str) -> float:
        now = time.monotonic()
        tokens, at = self._buckets.pop(client, (float(self.burst), now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
        self._buckets[client] = (tokens - 1 if tokens >= 1 else tokens, now)
        while len(self._buckets) > MAX_LOCAL_CLIENTS:
            self._buckets.popitem(last=False)
        return wait


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: int, store: Store, metrics: Metrics) -> None:
        self.rate, self.burst, self.metrics = rate_per_s, burst, metrics
        self.redis_store = store if isinstance(store, RedisStore) else None
        self.local = TokenBuckets(rate_per_s, burst)
        self._script = (
            self.redis_store.redis.register_script(TOKEN_BUCKET) if self.redis_store else None
        )

    async def retry_after(self, client: str) -> int | None:
        """None if ``client`` may go on; else whole seconds until it may (at least 1)."""
        wait = await self._take(client)
        if wait is None:
            self.metrics.rate_limit.labels("unchecked").inc()
            return None
        self.metrics.rate_limit.labels("limited" if wait > 0 else "allowed").inc()
        return max(1, math.ceil(wait)) if wait > 0 else None

    async def _take(self, client: str) -> float | None:
        store = self.redis_store
        if store is None or self._script is None:
            return self.local.take(client)
        if not store.available:
            return None
        try:
            wait = await self._script(keys=[f"dne:rate:{client}"], args=[self.rate, self.burst])
        except Exception as exc:  # as for the cache: Redis trouble never fails a request
            store.trip(exc)
            return None
        return float(wait)
