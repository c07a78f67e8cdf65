"""Painting: spec → the model's batcher → uint8 pixels → PNG, through the cache; and
pictures made of several images (an animation's frames, a grid's tiles), painted as one
group on the batcher."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Sequence

import numpy as np

from app.access import note
from app.cache import ImageCache
from app.engine import ImageRequest
from app.metrics import Metrics
from app.specs import ImageSpec
from model_store.images import encode_png


class Painter:
    def __init__(self, cache: ImageCache, metrics: Metrics, png_compress_level: int) -> None:
        self.cache, self.metrics, self.png_compress_level = cache, metrics, png_compress_level

    async def png(self, spec: ImageSpec, cached: bool) -> tuple[bytes, bool]:
        """(PNG bytes, cache hit). Deterministic requests go through the cache."""
        if not cached:
            return await self._paint(spec), False
        return await self.cache.get_or_create(spec.cache_key, lambda: self._paint(spec))

    async def group(
        self,
        specs: Sequence[ImageSpec],
        encode: Callable[[list[np.ndarray]], bytes],
        key: str | None,
    ) -> tuple[bytes, bool]:
        """(bytes, cache hit) of one picture made of ``specs`` (all of one model): they
        count as len(specs) requests and run as one batch where they fit; ``encode`` runs
        off the loop. Through the cache when ``key`` names the picture."""

        async def make() -> bytes:
            return await asyncio.to_thread(encode, await self._paint_group(specs))

        if key is None:
            return await make(), False
        return await self.cache.get_or_create(key, make)

    async def many(self, specs: Sequence[ImageSpec]) -> list[bytes]:
        """PNGs of ``specs`` (all of one model), painted as one group and encoded in one
        trip off the loop; not cached (painting ahead: app/pool.py)."""
        pairs = list(zip(await self._paint_group(specs), specs, strict=True))
        return await asyncio.to_thread(lambda: [self._encode(p, s.text) for p, s in pairs])

    async def pixels(self, spec: ImageSpec) -> np.ndarray:
        """[H, W, C] uint8: one row of the model's next batch."""
        note(model=spec.model.manifest.ref)
        [pixels] = await spec.model.paint([request_of(spec)], lambda n: note(batch_size=n))
        return pixels

    async def _paint_group(self, specs: Sequence[ImageSpec]) -> list[np.ndarray]:
        """[H, W, C] uint8 per spec (all of one model): one batch where they fit."""
        return await specs[0].model.paint([request_of(s) for s in specs])

    async def _paint(self, spec: ImageSpec) -> bytes:
        pixels = await self.pixels(spec)
        # Off the loop and off the batcher's thread. On this 2-core CPU both placements
        # measured alike (/random at 32 clients, 64x64: 310-520 req/s either way, within
        # noise); on a GPU the batcher's thread would serialize all encoding behind the
        # device (a batch of 256 takes ~1 ms there, its PNGs ~50 ms on one core). The
        # loop's default pool also outlives shutdown, so drained requests still encode.
        return await asyncio.to_thread(self._encode, pixels, spec.text)

    def _encode(self, pixels: np.ndarray, text: dict[str, str]) -> bytes:
        started = time.perf_counter()
        data = encode_png(pixels, self.png_compress_level, text)
        self.metrics.png_encode.observe(time.perf_counter() - started)
        return data


def request_of(spec: ImageSpec) -> ImageRequest:
    """What the engine paints for ``spec`` (its seed's latent drawn now, if it has one)."""
    return ImageRequest(spec.z, spec.label, spec.psi, spec.size)


def group_key(kind: str, specs: Sequence[ImageSpec], *params: object) -> str:
    """A cache key for a picture made of ``specs``: names each one and the encoding."""
    named = "\n".join([*(s.cache_key for s in specs), *map(repr, params)])
    return f"dne:{kind}:" + hashlib.sha256(named.encode()).hexdigest()
