"""Fresh images painted ahead: ``GET /random`` served from a bounded pool (DNE_RANDOM_POOL).

A fresh image costs a forward pass and a PNG encoding while its client waits, and a lone
request runs as a batch of one, the least efficient size. The pool holds images of the
default model's default version at the default options (what ``/random`` without a
query asks for), painted ahead in large batches and each served once; when it is empty,
``/random`` paints through the batcher as before.

- Bounded in images (``DNE_RANDOM_POOL``) and bytes (``DNE_RANDOM_POOL_BYTES``).
- Refilled only while the batcher is idle (nothing queued, no batch running), one batch
  of ``DNE_RANDOM_POOL_BATCH`` at a time, once that many have been taken: a live request
  waits at most for one refill batch, never behind a queue of them.
- Each entry is the image of its seed: painted from ``seed_latent`` with the class the
  seed names, at ψ = 1 and the model's size, and encoded with the same text chunks, so
  ``/models/{name}/{version}/seed/{X-Seed}`` paints it again (within the grey level a
  batch size may move: docs/design.md, "Bytes and links").
- A new default version (a hot switch) starts a new pool; the old one's images are
  dropped, never served under the new version's name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from dataclasses import dataclass

from app.metrics import Metrics
from app.painter import Painter
from app.registry import ModelRegistry, ServedModel
from app.specs import ImageOptions, ImageSpec, Specs, seed_latent

log = logging.getLogger("app.pool")
RANDOM_SEEDS = 2**53  # seeds /random hands out stay exact as JavaScript numbers
DEFAULTS = ImageOptions()  # the only options the pool paints: /random without a query
RETRY_S = 1.0  # after a refill failed (overloaded, shutting down, a batch error)


@dataclass(frozen=True)
class Pooled:
    spec: ImageSpec
    data: bytes  # the PNG


class RandomPool:
    """Painted-ahead images of one model version; the service keeps one (the default
    model's default version)."""

    def __init__(
        self,
        registry: ModelRegistry,
        specs: Specs,
        painter: Painter,
        metrics: Metrics,
        max_images: int,
        max_bytes: int,
        batch: int,
    ) -> None:
        self.registry, self.specs, self.painter, self.metrics = registry, specs, painter, metrics
        self.max_images, self.max_bytes, self.batch = max_images, max_bytes, max(1, batch)
        self.served: ServedModel | None = None  # whose images ``entries`` holds
        self.entries: deque[Pooled] = deque()
        self.bytes = 0
        self._room = asyncio.Event()  # set when a refill batch would fit
        self._task: asyncio.Task[None] | None = None
        self._painting: asyncio.Future[None] | None = None  # the refill batch running now

    async def take(self, served: ServedModel, options: ImageOptions) -> Pooled | None:
        """An image for ``/random`` with ``options`` from ``served``, if the pool has one.
        Drained while a refill batch is painting: that batch is sooner than a batch of
        one queued behind it, so the request waits for it."""
        if options != DEFAULTS:
            return None
        if self.served is served and not self.entries and self._painting is not None:
            await asyncio.shield(self._painting)
        if self.served is not served or not self.entries:
            self.metrics.random_pool.labels("empty").inc()
            self._room.set()  # a switched default, or drained: the refiller looks
            return None
        entry = self.entries.popleft()
        self.bytes -= len(entry.data)
        self.metrics.random_pool.labels("hit").inc()
        self.metrics.random_pool_images.set(len(self.entries))
        if self._has_room():
            self._room.set()
        return entry

    def start(self) -> None:
        self._task = asyncio.create_task(self._refill(), name="random-pool")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._drop()

    def _has_room(self) -> bool:
        mean = self.bytes / len(self.entries) if self.entries else 0
        return (
            len(self.entries) + self.batch <= self.max_images
            and self.bytes + mean * self.batch <= self.max_bytes
        )

    def _drop(self) -> None:
        self.entries.clear()
        self.bytes = 0
        self.metrics.random_pool_images.set(0)

    async def _refill(self) -> None:
        """Runs for the service's life: one batch at a time, while the batcher idles."""
        while True:
            served = self.registry.default(None)
            if served is not self.served:
                self.served = served  # a switch (or the start): the old images go
                self._drop()
            if not self._has_room():
                self._room.clear()
                await self._room.wait()
                continue
            if served.truncation is not None:
                # Not beside the class means' computation: both at once kept ~100 MB
                # more resident for good (measured), and the means come first.
                await asyncio.wait([served.truncation])
            await served.batcher.wait_idle()
            if self.registry.default(None) is not served:
                continue
            painting = self._painting = asyncio.get_running_loop().create_future()
            failure = None
            try:
                await self._paint(served)
            except Exception as exc:  # overloaded, shutting down, a failed batch
                failure = exc
            finally:
                self._painting = None
                painting.set_result(None)  # whoever waits takes what it brought, or paints
            if failure is not None:
                log.warning("random pool: a refill failed (%s); trying again", failure)
                await asyncio.sleep(RETRY_S)

    async def _paint(self, served: ServedModel) -> None:
        m = served.manifest
        seeds = [secrets.randbelow(RANDOM_SEEDS) for _ in range(self.batch)]
        specs = [self.specs.image(served, DEFAULTS, seed_latent(m, seed)) for seed in seeds]
        pngs = await self.painter.many(specs)
        if served is not self.served:
            return  # switched while painting
        for spec, data in zip(specs, pngs, strict=True):
            if len(self.entries) >= self.max_images or self.bytes + len(data) > self.max_bytes:
                break
            self.entries.append(Pooled(spec, data))
            self.bytes += len(data)
        self.metrics.random_pool_images.set(len(self.entries))
