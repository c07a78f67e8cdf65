"""``GET /random`` from images painted ahead (app/pool.py, DNE_RANDOM_POOL): each image is
its seed's image, served once, bounded, refilled only while the batcher idles, and never
served under another version's name after a switch."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from app.pool import RandomPool
from app.settings import Settings
from model_store import ModelStore

from .conftest import Running, eventually, hold_batches, save_emoji
from .test_api import metric, pixels

BATCH = 4


def pool_settings(root: Path, **changes: Any) -> Settings:
    base = {"model_store": root, "threads": 1, "max_delay_ms": 2, "store_poll_s": 0}
    pool = {"random_pool": 2 * BATCH, "random_pool_batch": BATCH}
    return Settings(**{**base, **pool, **changes})


def pool_of(r: Running) -> RandomPool:
    pool = r.app.state.service.pool
    assert pool is not None
    return pool


async def settled(r: Running) -> RandomPool:
    """Until the pool paints no more: no refill batch running, none that would fit. From
    empty that is every image it holds; after takes, anything above max - batch."""
    pool = pool_of(r)
    await eventually(
        lambda: pool._painting is None and not pool._has_room(), "the pool never settled"
    )
    return pool


async def full(r: Running) -> RandomPool:
    pool = await settled(r)
    assert len(pool.entries) == pool.max_images
    return pool


async def test_random_comes_from_the_pool_once_each_and_its_seed_link_paints_it(
    store_root: Path,
) -> None:
    async with Running(pool_settings(store_root)) as r:
        await full(r)
        answers = [await r.client.get("/random") for _ in range(2 * BATCH)]
        assert {a.headers["x-cache"] for a in answers} == {"pool"}
        assert all(a.headers["cache-control"] == "no-store" for a in answers)
        seeds = {a.headers["x-seed"] for a in answers}
        assert len(seeds) == len(answers)  # each painted-ahead image served once
        first = answers[0]
        version = first.headers["x-model-version"]
        pinned = await r.client.get(f"/models/emoji/{version}/seed/{first.headers['x-seed']}")
        assert pinned.status_code == 200 and pinned.headers["x-cache"] == "miss"
        # The same image, up to the grey level a batch size may move (docs/design.md).
        assert np.abs(pixels(pinned.content) - pixels(first.content)).max() <= 1
        text = (await r.client.get("/metrics")).text
        assert metric(text, "dne_random_pool_total", result="hit") == 2 * BATCH


async def test_random_with_options_is_painted_now_not_taken_from_the_pool(
    store_root: Path,
) -> None:
    async with Running(pool_settings(store_root)) as r:
        pool = await full(r)
        for query in ("size=32", "category=flags", "truncation=0.7", "model=plain"):
            answer = await r.client.get(f"/random?{query}")
            assert (answer.status_code, answer.headers["x-cache"]) == (200, "miss"), query
        assert len(pool.entries) == pool.max_images


async def test_the_pool_stays_within_its_bytes(store_root: Path) -> None:
    async with Running(pool_settings(store_root)) as r:
        one_image = len((await full(r)).entries[0].data)
    limit = int(2.5 * one_image)
    async with Running(pool_settings(store_root, random_pool_bytes=limit)) as r:
        pool = pool_of(r)
        await eventually(lambda: len(pool.entries) >= 2, "the pool never filled")
        await asyncio.sleep(0.2)  # and no refill piles more on
        assert 2 <= len(pool.entries) <= 3 and pool.bytes <= limit


async def test_a_refill_waits_while_the_batcher_is_busy(store_root: Path) -> None:
    """Painting ahead never puts a batch before a live request's."""
    async with Running(pool_settings(store_root)) as r:
        pool = await full(r)
        served = r.app.state.service.registry.default(None)
        may_run = hold_batches(served.batcher)
        try:
            live = asyncio.create_task(r.client.get("/random?size=32"))  # held in its batch
            await eventually(
                lambda: served.batcher._running_since is not None, "the live batch never ran"
            )
            for _ in range(pool.max_images):  # room for refills, while the batch is held
                assert (await r.client.get("/random")).headers["x-cache"] == "pool"
            await asyncio.sleep(0.2)
            assert pool._painting is None and not pool.entries  # no refill queued behind it
        finally:
            may_run.set()
        assert (await live).status_code == 200
        await full(r)  # refilled once the batcher idles


async def test_after_a_switch_random_never_serves_the_old_versions_images(
    store_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "store"
    shutil.copytree(store_root, root)
    async with Running(pool_settings(root)) as r:
        await full(r)
        save_emoji(ModelStore(root), seed=1)  # emoji 2
        await r.app.state.service.registry.rescan()
        for _ in range(3 * BATCH):
            answer = await r.client.get("/random")
            assert answer.headers["x-model-version"] == "2", answer.headers
        pool = await settled(r)
        assert pool.entries and {e.spec.model.manifest.version for e in pool.entries} == {2}


async def test_no_pool_when_it_is_off(store_root: Path) -> None:
    async with Running(pool_settings(store_root, random_pool=0)) as r:
        assert r.app.state.service.pool is None
        assert (await r.client.get("/random")).headers["x-cache"] == "miss"
