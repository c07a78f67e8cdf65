"""The served models and their life cycle: load, warm up, serve, stop.

A served model is one stored version (``name``/``version``) with its engine and its own
batcher. The registry keys them by (name, version), and keeps apart which version of a
name is its default (what ``/random`` and ``/seed/{seed}`` use): so several versions of
one name can be served side by side, and switching the default is one assignment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from app.batcher import Batcher, Overloaded
from app.engine import Engine, ImageRequest
from app.errors import ApiError
from app.metrics import Metrics
from app.settings import Settings
from model_store import LoadedModel, Manifest, ModelStore, StoreError

log = logging.getLogger("app")


@dataclass
class ServedModel:
    manifest: Manifest
    engine: Engine
    batcher: Batcher[ImageRequest, np.ndarray]


class ModelRegistry:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        on_failure: Callable[[BaseException], None] = lambda exc: None,
    ) -> None:
        self.settings, self.metrics, self.on_failure = settings, metrics, on_failure
        self.store = ModelStore(settings.model_store)
        self._served: dict[tuple[str, int], ServedModel] = {}
        self._defaults: dict[str, int] = {}  # name → the version its unpinned links use
        self.ready = False  # every model loaded and warm
        self.failure: str | None = None  # why start-up failed, for the log

    # --- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Load every stored generator, start its batcher, warm it up; then ready.

        Runs as a background task of the lifespan, so /healthz answers meanwhile and
        /readyz says 503. A bad or missing file is fatal: ``failure`` says why (in the
        log, never to clients: it names server paths) and ``on_failure`` is told, so
        ``python -m app`` stops with that message instead of serving half-broken.
        """
        try:
            loaded = await asyncio.to_thread(self._load_defaults)  # sha256 + weights: off the loop
            for model in loaded:
                served = await self._serve(model)
                await self._warm_up(served)
                self._defaults[model.manifest.name] = model.manifest.version
        except Exception as exc:
            self.failure = f"{type(exc).__name__}: {exc}"
            log.error("start-up failed: %s", self.failure)
            self.on_failure(exc)
            return
        self.ready = True

    def _load_defaults(self) -> list[LoadedModel]:
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

    async def _serve(self, loaded: LoadedModel) -> ServedModel:
        s, m = self.settings, loaded.manifest
        engine = Engine(loaded, s.amp)
        batcher = Batcher(
            engine.run,
            s.max_batch_size,
            s.max_delay_ms,
            s.queue_size,
            timeout_s=s.request_timeout_s,
            observer=self.metrics.batcher_observer(m.name),
            name=f"batcher-{m.ref}",  # name/version: versions may be served side by side
        )
        await batcher.start()
        served = self._served[(m.name, m.version)] = ServedModel(m, engine, batcher)
        self.metrics.model_info.labels(
            m.name, str(m.version), m.architecture, str(loaded.device), engine.precision
        ).info({})
        log.info("loaded %s on %s (%s)", m.ref, loaded.device, engine.precision)
        return served

    async def _warm_up(self, served: ServedModel) -> None:
        started = time.perf_counter()
        sizes = (1, min(8, self.settings.max_batch_size), self.settings.max_batch_size)
        await asyncio.to_thread(served.engine.warm_up, tuple(sorted(set(sizes))))
        log.info("%s warm after %.1f s", served.manifest.ref, time.perf_counter() - started)

    async def stop(self) -> None:
        """Drain every batcher: queued requests are served, later ones refused."""
        for served in self._served.values():
            await served.batcher.stop()

    # --- lookups ------------------------------------------------------------------------

    def default(self, name: str | None) -> ServedModel:
        """The default version of ``name`` (``None``: the default model)."""
        self._check_ready()
        name = name or self.settings.model
        version = self._defaults.get(name)
        if version is None:
            raise ApiError(
                404, "model: no model by that name is served; GET /models lists them", "model"
            )
        return self._served[(name, version)]

    async def pinned(self, name: str, version: int) -> ServedModel:
        """Exactly ``name``/``version``. Async so that a stored version not yet served can
        be loaded on first use without changing its callers."""
        default = self.default(name)
        served = self._served.get((name, version))
        if served is None:
            raise ApiError(
                404,
                f"version: not served; this service serves {name} version "
                f"{default.manifest.version}",
                "version",
            )
        return served

    def _check_ready(self) -> None:
        if not self.ready:
            self.metrics.rejected("not_ready")
            raise Overloaded("not_ready", "the service is warming up")

    def problems(self) -> list[str]:
        """What keeps a served model from answering now (a batch stuck past its deadline)."""
        return [h for s in self._served.values() if (h := s.batcher.health()) is not None]

    @property
    def alive(self) -> bool:
        """False once a batcher's loop has died: only a restart helps then."""
        return all(s.batcher.alive for s in self._served.values())

    def served(self) -> list[ServedModel]:
        return list(self._served.values())

    def defaults(self) -> dict[str, int]:
        """name → the version unpinned requests get."""
        return dict(self._defaults)
