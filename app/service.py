"""The served models and the path of one image: options → latent → batcher → PNG → cache."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from app.batcher import Batcher, Overloaded
from app.cache import ImageCache, MemoryStore, RedisStore, Store
from app.engine import Engine, ImageRequest
from app.errors import ApiError
from app.images import encode_png
from app.metrics import Metrics
from app.settings import Settings
from model_store import LoadedModel, Manifest, ModelStore, StoreError, seed_to_latent

log = logging.getLogger("app")


@dataclass
class ServedModel:
    manifest: Manifest
    engine: Engine
    batcher: Batcher[ImageRequest, np.ndarray]


@dataclass(frozen=True)
class ImageOptions:
    """What a client may choose besides the seed or latent (validated by the routes)."""

    model: str | None = None
    category: str | None = None
    truncation: float = 1.0
    size: int | None = None


@dataclass(frozen=True)
class ImageSpec:
    """Everything that determines the bytes of one image."""

    model: ServedModel
    latent: torch.Tensor
    source: str  # "seed-<n>" or "latent-<sha256>": names the latent in cache keys
    label: int | None
    psi: float
    size: int

    @property
    def cache_key(self) -> str:
        # repr(psi) round-trips the float exactly: two truncations never share a key.
        m = self.model.manifest
        return f"dne:png:{m.name}:{m.version}:{self.source}:{self.label}:{self.psi!r}:{self.size}"

    @property
    def etag(self) -> str:
        """Names the image, not its bytes: weak, since another replica or device may paint
        it one grey level apart (see DESIGN, "Bytes and links")."""
        return 'W/"' + hashlib.sha256(self.cache_key.encode()).hexdigest()[:32] + '"'

    @property
    def category_slug(self) -> str | None:
        slugs = self.model.manifest.class_slugs
        return slugs[self.label] if self.label is not None and slugs else None


class ImageService:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        on_failure: Callable[[BaseException], None] = lambda exc: None,
    ) -> None:
        self.settings, self.metrics, self.on_failure = settings, metrics, on_failure
        self.store = ModelStore(settings.model_store)
        self.models: dict[str, ServedModel] = {}
        self.ready = False  # every model loaded and warm
        self.failure: str | None = None  # why start-up failed, for the log
        self.cache = ImageCache(self._cache_store(), metrics)

    def _cache_store(self) -> Store:
        s = self.settings
        if s.redis_url:
            return RedisStore(s.redis_url, s.cache_ttl_s, s.redis_timeout_s, s.redis_cooldown_s)
        return MemoryStore(s.cache_max_bytes)

    # --- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Load every stored generator, start its batcher, warm it up; then ready.

        Runs as a background task of the lifespan, so /healthz answers meanwhile and
        /readyz says 503. A bad or missing file is fatal: ``failure`` says why (in the
        log, never to clients: it names server paths) and ``on_failure`` is told, so
        ``python -m app`` stops with that message instead of serving half-broken.
        """
        try:
            loaded = await asyncio.to_thread(self._load_all)  # sha256 + weights: off the loop
            for model in loaded:
                await self._serve(model)
            await self._warm_up()
        except Exception as exc:
            self.failure = f"{type(exc).__name__}: {exc}"
            log.error("start-up failed: %s", self.failure)
            self.on_failure(exc)
            return
        self.ready = True

    def _load_all(self) -> list[LoadedModel]:
        s = self.settings
        if s.threads:
            torch.set_num_threads(s.threads)
        names = {m.name for m in self.store.manifests("generator")}
        if s.model not in names:
            raise StoreError(
                f"default model {s.model!r} is not in {self.store.root} "
                f"(found: {', '.join(sorted(names)) or 'nothing'}); set DNE_MODEL"
            )
        device = s.torch_device()
        return [
            self.store.load(name, s.model_version if name == s.model else "latest", device)
            for name in sorted(names)
        ]

    async def _serve(self, loaded: LoadedModel) -> None:
        s, m = self.settings, loaded.manifest
        engine = Engine(loaded, s.amp)
        batcher = Batcher(
            engine.run,
            s.max_batch_size,
            s.max_delay_ms,
            s.queue_size,
            timeout_s=s.request_timeout_s,
            observer=self.metrics.batcher_observer(m.name),
            name=f"batcher-{m.name}",
        )
        await batcher.start()
        self.models[m.name] = ServedModel(m, engine, batcher)
        self.metrics.model_info.labels(
            m.name, str(m.version), m.architecture, str(loaded.device)
        ).info({})
        log.info("loaded %s on %s (autocast: %s)", m.ref, loaded.device, engine.dtype)

    async def _warm_up(self) -> None:
        started = time.perf_counter()
        sizes = (1, min(8, self.settings.max_batch_size), self.settings.max_batch_size)
        for served in self.models.values():
            await asyncio.to_thread(served.engine.warm_up, tuple(sorted(set(sizes))))
        log.info("warm after %.1f s", time.perf_counter() - started)

    async def stop(self) -> None:
        """Drain every batcher (queued requests are served), then close the rest."""
        for served in self.models.values():
            await served.batcher.stop()
        await self.cache.close()

    # --- requests -----------------------------------------------------------------------

    def model(self, name: str | None) -> ServedModel:
        if not self.ready:
            self.metrics.rejected("not_ready")
            raise Overloaded("not_ready", "the service is warming up")
        name = name or self.settings.model
        served = self.models.get(name)
        if served is None:
            raise ApiError(404, f"no model named {name!r}; GET /models lists them", "model")
        return served

    def pinned(self, name: str, version: int) -> ServedModel:
        served = self.model(name)
        if served.manifest.version != version:
            raise ApiError(
                404,
                f"{name} version {version} is not served (this service serves version "
                f"{served.manifest.version})",
                "version",
            )
        return served

    def spec(
        self,
        served: ServedModel,
        options: ImageOptions,
        *,
        seed: int | None = None,
        latent: list[float] | None = None,
    ) -> ImageSpec:
        m = served.manifest
        if seed is not None:
            z, source, fallback = seed_to_latent(seed, m.z_dim), f"seed-{seed}", seed
        else:
            assert latent is not None
            if len(latent) != m.z_dim:
                raise ApiError(
                    422, f"latent: {m.name} takes {m.z_dim} numbers, got {len(latent)}", "latent"
                )
            z = torch.tensor(latent, dtype=torch.float32)
            digest = hashlib.sha256(z.numpy().tobytes()).hexdigest()
            source, fallback = f"latent-{digest}", int(digest[:15], 16)
        return ImageSpec(
            model=served,
            latent=z,
            source=source,
            label=self.label(m, options.category, fallback),
            psi=options.truncation,
            size=self.size(m, options.size),
        )

    def label(self, m: Manifest, category: str | None, fallback: int) -> int | None:
        """The class: the one asked for, else one derived from the seed (or latent), so a
        seed names one image even on a conditional model."""
        if not m.conditional:
            if category is not None:
                raise ApiError(422, f"category: {m.name} has no categories", "category")
            return None
        if category is None:
            return fallback % len(m.class_names)
        try:
            return m.class_index(category)
        except KeyError:
            known = ", ".join(m.class_slugs or m.class_names)
            raise ApiError(
                422, f"category: unknown {category[:40]!r}; one of {known}", "category"
            ) from None

    def size(self, m: Manifest, size: int | None) -> int:
        if size is None:
            return m.resolution
        if not 8 <= size <= self.settings.max_size:
            raise ApiError(422, f"size: must be 8 .. {self.settings.max_size} pixels", "size")
        return size

    async def png(self, spec: ImageSpec, cached: bool) -> tuple[bytes, bool]:
        """(PNG bytes, cache hit). Deterministic requests go through the cache."""
        if not cached:
            return await self._paint(spec), False
        return await self.cache.get_or_create(spec.cache_key, lambda: self._paint(spec))

    async def _paint(self, spec: ImageSpec) -> bytes:
        request = ImageRequest(spec.latent, spec.label, spec.psi, spec.size)
        pixels = await spec.model.batcher.submit(request)
        # Off the loop and off the batcher's thread. On this 2-core CPU both placements
        # measured alike (/random at 32 clients, 64x64: 310-520 req/s either way, within
        # noise); on a GPU the batcher's thread would serialize all encoding behind the
        # device (a batch of 256 takes ~1 ms there, its PNGs ~50 ms on one core). The
        # loop's default pool also outlives shutdown, so drained requests still encode.
        return await asyncio.to_thread(self._encode, pixels)

    def _encode(self, pixels: np.ndarray) -> bytes:
        started = time.perf_counter()
        data = encode_png(pixels, self.settings.png_compress_level)
        self.metrics.png_encode.observe(time.perf_counter() - started)
        return data
