"""The cache with a real redis-server: hits after misses, and Redis trouble never fails a
request (killed, hung with SIGSTOP, then back)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from app.cache import ImageCache, MemoryStore, RedisStore
from app.metrics import Metrics

from .conftest import RedisServer, Running, eventually
from .test_api import metric


def redis_settings(settings, server: RedisServer):
    return settings.model_copy(
        update={"redis_url": server.url, "redis_timeout_s": 0.1, "redis_cooldown_s": 0.3}
    )


async def lookups(client, result: str) -> float:
    return metric((await client.get("/metrics")).text, "dne_cache_lookups_total", result=result)


async def test_redis_hit_after_miss_with_the_same_bytes(settings, redis_server) -> None:
    async with Running(redis_settings(settings, redis_server)) as r:
        first = await r.client.post("/generate", json={"seed": 7})
        second = await r.client.post("/generate", json={"seed": 7})
        assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
        assert first.content == second.content
        assert await lookups(r.client, "hit") == 1
    # A new process (fresh app) finds it in Redis: the cache outlives the service.
    async with Running(redis_settings(settings, redis_server)) as r:
        third = await r.client.post("/generate", json={"seed": 7})
        assert third.headers["x-cache"] == "hit" and third.content == first.content


async def test_redis_killed_then_back(settings, redis_server) -> None:
    async with Running(redis_settings(settings, redis_server)) as r:
        await r.client.post("/generate", json={"seed": 1})
        redis_server.kill()
        down = [await r.client.post("/generate", json={"seed": s}) for s in (1, 2, 3)]
        assert [x.status_code for x in down] == [200, 200, 200]
        assert await lookups(r.client, "error") >= 1
        assert await lookups(r.client, "bypass") >= 1  # skipped while the breaker is open

        redis_server.start()
        deadline = time.monotonic() + 10
        while (await r.client.post("/generate", json={"seed": 50})).headers["x-cache"] != "hit":
            assert time.monotonic() < deadline, "the cache never came back"
            await asyncio.sleep(0.2)


async def test_a_hung_redis_does_not_stall_requests(settings, redis_server) -> None:
    async with Running(redis_settings(settings, redis_server)) as r:
        await r.client.post("/generate", json={"seed": 1})
        redis_server.pause()
        try:
            # A deadline, not a benchmark: without the breaker and with redis-py's retries
            # each request would wait on Redis twice (get, set), ~8 s for the ten.
            requests = [r.client.post("/generate", json={"seed": 100 + s}) for s in range(10)]
            for request in requests:
                assert (await asyncio.wait_for(request, 5)).status_code == 200
            # One call timed out and opened the breaker; the nine after it skipped Redis
            # (the breaker stays open while its probe waits for the hung server).
            assert await lookups(r.client, "error") == 1
            assert await lookups(r.client, "bypass") == 9
        finally:
            redis_server.resume()


async def test_identical_concurrent_misses_generate_once() -> None:
    cache = ImageCache(MemoryStore(1_000_000), Metrics())
    calls = 0

    async def slow_paint() -> bytes:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return b"png"

    results = await asyncio.gather(*(cache.get_or_create("k", slow_paint) for _ in range(10)))
    assert calls == 1 and {value for value, _ in results} == {b"png"}
    assert (await cache.get_or_create("k", slow_paint)) == (b"png", True)


async def test_a_caller_going_away_does_not_fail_the_others_waiting_on_its_work() -> None:
    cache = ImageCache(MemoryStore(1_000_000), Metrics())

    async def slow_paint() -> bytes:
        await asyncio.sleep(0.05)
        return b"png"

    first = asyncio.create_task(cache.get_or_create("k", slow_paint))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(cache.get_or_create("k", slow_paint))
    await asyncio.sleep(0.01)
    first.cancel()
    assert await second == (b"png", False)
    assert await cache.get_or_create("k", slow_paint) == (b"png", True)


async def test_a_failed_paint_reaches_every_waiter_and_is_not_cached() -> None:
    cache = ImageCache(MemoryStore(1_000_000), Metrics())

    async def broken_paint() -> bytes:
        await asyncio.sleep(0.01)
        raise RuntimeError("device fell over")

    results = await asyncio.gather(
        *(cache.get_or_create("k", broken_paint) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    assert await cache.store.get("k") is None


async def test_memory_cache_is_bounded_in_bytes() -> None:
    store = MemoryStore(max_bytes=100)
    for i in range(10):
        await store.set(f"k{i}", bytes(30))
    assert store.bytes <= 100
    assert await store.get("k9") is not None and await store.get("k0") is None
    await store.set("huge", bytes(500))
    assert await store.get("huge") is None


class SlowFirstGet(MemoryStore):
    """A real in-memory store whose first get reads at once but answers only when the
    test says so: the round trip of a slow network, made as wide as the test needs."""

    def __init__(self) -> None:
        super().__init__(1_000_000)
        self.first_get_may_answer = asyncio.Event()
        self.first_get_read = asyncio.Event()

    async def get(self, key: str) -> bytes | None:
        value = await super().get(key)
        if not self.first_get_read.is_set():
            self.first_get_read.set()
            await asyncio.wait_for(self.first_get_may_answer.wait(), 10)
        return value


async def test_a_miss_whose_lookup_outlives_another_paint_does_not_paint_again() -> None:
    cache = ImageCache(SlowFirstGet(), Metrics())
    calls = 0

    async def paint() -> bytes:
        nonlocal calls
        calls += 1
        return b"png"

    slow = asyncio.create_task(cache.get_or_create("k", paint))  # reads "miss", then waits
    await asyncio.wait_for(cache.store.first_get_read.wait(), 10)
    assert await cache.get_or_create("k", paint) == (b"png", False)  # painted and stored
    cache.store.first_get_may_answer.set()  # the stale "miss" arrives after all that
    value, _ = await asyncio.wait_for(slow, 10)
    assert value == b"png" and calls == 1


def fail_once(monkeypatch: pytest.MonkeyPatch, store: RedisStore, name: str) -> None:
    """A fault injected into the client of a real redis-server: its next ``name`` call
    raises an error that is neither RedisError nor OSError (a client bug, say)."""
    real = getattr(store.redis, name)

    async def failing(*args: object, **kwargs: object) -> object:
        monkeypatch.setattr(store.redis, name, real)
        raise RuntimeError(f"{name}: not a RedisError")

    monkeypatch.setattr(store.redis, name, failing)


async def paint_png() -> bytes:
    return b"png"


@pytest.fixture
async def redis_cache(redis_server: RedisServer) -> AsyncIterator[ImageCache]:
    """An ImageCache on the real redis-server, with a short breaker cooldown."""
    store = RedisStore(redis_server.url, ttl_s=60, timeout_s=0.5, cooldown_s=0.05)
    cache = ImageCache(store, Metrics())
    yield cache
    await cache.close()


async def redis_is_used_again(cache: ImageCache) -> None:
    await eventually(lambda: cache.store.available, "Redis is used again")
    assert await cache.get_or_create("k2", paint_png) == (b"png", False)
    assert await cache.get_or_create("k2", paint_png) == (b"png", True)


async def test_an_unexpected_redis_error_does_not_fail_the_request(
    redis_cache, monkeypatch
) -> None:
    fail_once(monkeypatch, redis_cache.store, "get")
    result = await asyncio.wait_for(redis_cache.get_or_create("k", paint_png), 10)
    assert result == (b"png", False)
    assert redis_cache.metrics.cache_lookups.labels("error")._value.get() == 1
    await redis_is_used_again(redis_cache)


async def test_an_unexpected_error_in_the_probe_does_not_leave_redis_skipped(
    redis_cache, redis_server, monkeypatch
) -> None:
    redis_server.kill()
    fail_once(monkeypatch, redis_cache.store, "ping")  # the probe's first try
    assert await redis_cache.get_or_create("k", paint_png) == (b"png", False)
    assert not redis_cache.store.available  # the breaker is open, the probe waits for Redis
    redis_server.start()
    await redis_is_used_again(redis_cache)


async def test_replicas_in_another_precision_share_no_cache_entry_or_etag(
    settings, redis_server
) -> None:
    link = "/models/emoji/1/seed/5"
    async with Running(redis_settings(settings, redis_server)) as fp32:
        first = await fp32.client.get(link)
    bf16 = redis_settings(settings, redis_server).model_copy(update={"amp": "bf16"})
    async with Running(bf16) as r:
        other = await r.client.get(link)
        again = await r.client.get(link)
    assert first.headers["x-cache"] == "miss" and other.headers["x-cache"] == "miss"
    assert other.headers["etag"] != first.headers["etag"]  # another image, another name
    assert again.headers["x-cache"] == "hit" and again.content == other.content


async def test_the_painting_stops_when_its_last_waiter_leaves() -> None:
    cache = ImageCache(MemoryStore(1_000_000), Metrics())
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow_paint() -> bytes:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return b"png"

    first = asyncio.create_task(cache.get_or_create("k", slow_paint))
    second = asyncio.create_task(cache.get_or_create("k", slow_paint))
    await asyncio.wait_for(started.wait(), 5)
    first.cancel()  # a client left; another still waits for the same image
    await asyncio.sleep(0.05)
    assert not cancelled.is_set()
    second.cancel()  # the last one left: nobody wants the image any more
    await asyncio.wait_for(cancelled.wait(), 5)
    assert await cache.store.get("k") is None


async def test_the_memory_cache_reports_its_bytes() -> None:
    metrics = Metrics()
    cache = ImageCache(MemoryStore(1_000_000), metrics)

    async def paint() -> bytes:
        return bytes(1234)

    await cache.get_or_create("a", paint)
    await cache.get_or_create("b", paint)
    text = metrics.render().decode()
    assert "dne_cache_bytes 2468.0" in text
