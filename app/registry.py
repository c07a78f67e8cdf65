"""The served models and their life cycle: load, warm up, serve, switch, unload, stop.

A served model is one stored version (``name``/``version``) with its engine and its own
batcher, keyed by (name, version). Each name has a default version, kept apart: what
``/random``, ``/seed/{seed}`` and ``POST /generate`` use; a pinned link names its own.

- Start-up loads and warms each name's default: its latest stored version, or
  ``DNE_MODEL_VERSION`` for ``DNE_MODEL``.
- Every other stored version loads on its first pinned request: once however many ask
  at once, off the event loop. At most ``DNE_EXTRA_VERSIONS`` of them stay loaded; the
  least recently used is unloaded and its batcher drained.
- The store is looked at again every ``DNE_STORE_POLL_S`` and on ``rescan_soon()``
  (SIGHUP in ``python -m app``). A name's new latest version is loaded and warmed beside
  the serving one, then becomes the default in one assignment; the old default stays
  loaded like any other version. A version that fails to load is logged, the old one
  serves on and the service stays ready.

The registry sees the store as its last scan found it: a version folder counts once its
manifest is valid and names that folder. ``ModelStore.save`` renames a whole folder into
place, so a version being exported is never seen half-written; a folder copied in by
hand is ignored until its manifest is valid (and fails to load, logged, until its
weights match that manifest).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from app.batcher import Batcher, Overloaded
from app.engine import Engine, ImageRequest
from app.errors import ApiError
from app.metrics import Metrics
from app.settings import Settings
from model_store import Manifest, ModelStore, StoreError
from model_store.store import read_manifest

log = logging.getLogger("app")
Key = tuple[str, int]  # (name, version)
Files = tuple[tuple[str, int, int], ...]  # a folder's (file, size, mtime_ns): changes with any file
RETRY_FAILED_LOAD_S = 60.0  # a version that failed to load is tried again after this...
# ...or as soon as its files change. Unloading: requests that found a version just before
# it was unloaded are between lookup and queue (one cache lookup, DNE_REDIS_TIMEOUT_S);
# its batcher takes them for this long, then drains what is queued and stops.
UNLOAD_GRACE_S = 2.0


@dataclass
class ServedModel:
    manifest: Manifest
    engine: Engine
    batcher: Batcher[ImageRequest, np.ndarray]
    # Truncation's class means, computed in the background after warm-up (None: nothing
    # to compute). Only rows at ψ ≠ 1 wait for them.
    truncation: asyncio.Task[None] | None = None

    async def paint(
        self, requests: list[ImageRequest], on_batch: Callable[[int], None] | None = None
    ) -> list[np.ndarray]:
        """Pixels for ``requests`` from this model's batcher, in order; truncated rows
        first wait (at most the batcher's timeout) for the class means."""
        fitting = self.truncation
        if fitting is not None and not fitting.done() and any(r.psi != 1.0 for r in requests):
            try:
                await asyncio.wait_for(asyncio.shield(fitting), self.batcher.timeout_s)
            except TimeoutError:
                raise Overloaded(
                    "not_ready", "truncation is still warming up; try again shortly"
                ) from None
            except Exception:
                pass  # logged where it failed; the generator computes them on first use
        return await self.batcher.submit_many(requests, on_batch)


@dataclass(frozen=True)
class StoredVersion:
    manifest: Manifest
    files: Files


@dataclass(frozen=True)
class LoadFailure:
    reason: str  # for the log only: it names server paths
    files: Files
    at: float  # time.monotonic()


class ModelRegistry:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        on_failure: Callable[[BaseException], None] = lambda exc: None,
    ) -> None:
        self.settings, self.metrics, self.on_failure = settings, metrics, on_failure
        self.store = ModelStore(settings.model_store)
        self._served: dict[Key, ServedModel] = {}  # loaded, warm, answering
        self._defaults: dict[str, int] = {}  # name → the version its unpinned links use
        self._extras: OrderedDict[Key, None] = OrderedDict()  # served, not a default: LRU first
        self._stored: dict[str, dict[int, StoredVersion]] = {}  # the store, as last scanned
        self._loading: dict[Key, asyncio.Task[ServedModel]] = {}
        self._failures: dict[Key, LoadFailure] = {}
        self._unloading: set[asyncio.Task[None]] = set()
        self._fitting: set[asyncio.Task[None]] = set()  # truncation means being computed
        self._one_load = asyncio.Lock()  # loads take the CPU (or device memory): one at a time
        self._scanning = asyncio.Lock()
        self._rescan_asked = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._read: dict[Path, tuple[Files, Manifest | None]] = {}  # the scan's memory
        self.ready = False  # every default loaded and warm
        self.failure: str | None = None  # why start-up failed, for the log

    # --- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Load every name's default, start its batcher, warm it up; then ready, and watch
        the store for new versions.

        Runs as a background task of the lifespan, so /healthz answers meanwhile and
        /readyz says 503. A bad or missing file is fatal here: ``failure`` says why (in
        the log, never to clients: it names server paths) and ``on_failure`` is told, so
        ``python -m app`` stops with that message instead of serving half-broken.
        """
        self._loop = asyncio.get_running_loop()
        try:
            if self.settings.threads:
                torch.set_num_threads(self.settings.threads)
            self._stored = await asyncio.to_thread(self._scan)
            for name, version in sorted(self._start_targets().items()):
                self._served[(name, version)] = await self._load((name, version))
                self._defaults[name] = version
                self._show(name, version)
        except Exception as exc:
            self.failure = f"{type(exc).__name__}: {exc}"
            log.error("start-up failed: %s", self.failure)
            self.on_failure(exc)
            return
        self.ready = True
        self._watcher = asyncio.create_task(self._watch(), name="store-watcher")

    def _start_targets(self) -> dict[str, int]:
        s = self.settings
        if s.model not in self._stored:
            raise StoreError(
                f"default model {s.model!r} is not in {self.store.root} "
                f"(found: {', '.join(sorted(self._stored)) or 'nothing'}); set DNE_MODEL"
            )
        targets = self._targets()
        if targets[s.model] not in self._stored[s.model]:
            raise StoreError(
                f"model {s.model!r} has no version {s.model_version} in {self.store.root} "
                f"(has {sorted(self._stored[s.model])}); set DNE_MODEL_VERSION"
            )
        return targets

    def _targets(self) -> dict[str, int]:
        """name → the version that should be its default, by the last scan."""
        s = self.settings
        targets = {name: max(versions) for name, versions in self._stored.items()}
        if s.model_version != "latest" and s.model in targets:
            targets[s.model] = s.model_version  # pinned: never switched
        return targets

    async def stop(self) -> None:
        """Stop watching and loading; drain every batcher: queued requests are served,
        later ones refused."""
        # A computation of truncation means goes on in its thread; nobody waits for it.
        tasks = [
            t for t in (self._watcher, *self._loading.values(), *self._fitting) if t is not None
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for served in list(self._served.values()):
            await served.batcher.stop()
        for task in list(self._unloading):  # no more grace: drain them now
            task.cancel()
        await asyncio.gather(*self._unloading, return_exceptions=True)

    # --- loading ------------------------------------------------------------------------

    async def _load(self, key: Key) -> ServedModel:
        """Load ``key`` (sha256, weights: off the loop), start its batcher, warm it up."""
        name, version = key
        s = self.settings
        engine = await asyncio.to_thread(
            lambda: Engine(self.store.load(name, version, s.torch_device()), s.amp)
        )
        m = engine.manifest
        batcher = Batcher(
            engine.run,
            s.max_batch_size,
            s.max_delay_ms,
            s.queue_size,
            timeout_s=s.request_timeout_s,
            observer=self.metrics.batcher_observer(m.name, m.version),
            name=f"batcher-{m.ref}",  # name/version: versions may be served side by side
        )
        await batcher.start()
        log.info("loaded %s on %s (%s)", m.ref, engine.device, engine.precision)
        try:
            started = time.perf_counter()
            sizes = sorted({1, min(8, s.max_batch_size), s.max_batch_size})
            await asyncio.to_thread(engine.warm_up, tuple(sizes))
            log.info("%s warm after %.1f s", m.ref, time.perf_counter() - started)
        except BaseException:
            await batcher.stop()
            raise
        # Ready without them: ψ = 1 (most traffic) never needs them, and they took 3-10 s
        # of a loaded 2-core CPU, most of the cold start (benchmarks/serving.md).
        fitting = None
        if not engine.truncation_fitted:
            fitting = asyncio.create_task(fit_truncation(engine), name=f"truncation-{m.ref}")
            self._fitting.add(fitting)
            fitting.add_done_callback(self._fitting.discard)
        return ServedModel(m, engine, batcher, fitting)

    def _load_task(self, key: Key) -> asyncio.Task[ServedModel]:
        """The one load of ``key``: every caller that asks meanwhile awaits the same task."""
        task = self._loading.get(key)
        if task is None:
            task = self._loading[key] = asyncio.create_task(self._load_version(key))
            task.add_done_callback(lambda _: self._loading.pop(key, None))
        return task

    async def _load_version(self, key: Key) -> ServedModel:
        """Load a version after start-up: it joins the extras (least recently used
        first); a switch then takes it out to make it a default."""
        async with self._one_load:
            if (served := self._served.get(key)) is not None:
                return served
            stored = self._stored_version(key)
            files = stored.files if stored else ()
            try:
                served = await self._load(key)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                self._failures[key] = LoadFailure(reason, files, time.monotonic())
                log.error("%s/%s could not be loaded: %s", *key, reason)
                raise
            self._failures.pop(key, None)
            self._served[key] = served
            self._extras[key] = None
            self._show(*key)
            self._evict()
            return served

    def _may_retry(self, key: Key) -> bool:
        failure = self._failures.get(key)
        stored = self._stored_version(key)
        return (
            failure is None
            or stored is None
            or stored.files != failure.files
            or time.monotonic() - failure.at >= RETRY_FAILED_LOAD_S
        )

    # --- unloading ----------------------------------------------------------------------

    def _evict(self) -> None:
        while len(self._extras) > self.settings.extra_versions:
            oldest = next(iter(self._extras))
            log.info("%s/%s unloaded: least recently used of the extra versions", *oldest)
            self._unload(oldest)

    def _unload(self, key: Key) -> None:
        """Out of every lookup now; its batcher stops after UNLOAD_GRACE_S, drained."""
        self._extras.pop(key, None)
        served = self._served.pop(key)
        self.metrics.forget_model(served.manifest, served.engine.device, served.engine.precision)
        task = asyncio.create_task(self._drain(key, served), name=f"unload {key}")
        self._unloading.add(task)
        task.add_done_callback(self._unloading.discard)

    async def _drain(self, key: Key, served: ServedModel) -> None:
        try:
            await asyncio.sleep(UNLOAD_GRACE_S)
        finally:
            await served.batcher.stop()
            if key not in self._served and key not in self._loading:
                self.metrics.forget_queue(*key)

    # --- the store, scanned -------------------------------------------------------------

    def rescan_soon(self) -> None:
        """Ask for a look at the store now (safe from a signal handler or another thread)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._rescan_asked.set)

    async def _watch(self) -> None:
        poll = self.settings.store_poll_s or None  # 0: only when asked
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rescan_asked.wait(), poll)
            self._rescan_asked.clear()
            try:
                await self.rescan()
            except Exception:
                log.exception("looking at the model store failed; serving on as before")

    async def rescan(self) -> None:
        """Look at the store again: switch each name's default to its new latest version
        (loaded and warmed first), unload extras that left the store."""
        async with self._scanning:
            self._stored = await asyncio.to_thread(self._scan)
            for name, version in sorted(self._targets().items()):
                if self._defaults.get(name) != version and self._may_retry((name, version)):
                    await self._switch(name, version)
            for key in [k for k in self._extras if self._stored_version(k) is None]:
                log.info("%s/%s is no longer stored: unloaded", *key)
                self._unload(key)

    async def _switch(self, name: str, version: int) -> None:
        key = (name, version)
        log.info("%s/%s found in the store: loading it beside the one serving", *key)
        old = self._defaults.get(name)
        try:
            await asyncio.shield(self._load_task(key))
        except Exception:
            log.error("%s stays at version %s: version %s failed to load", name, old, version)
            return
        if key not in self._served:  # unloaded (least recently used) before this resumed
            log.warning("%s/%s was unloaded before the switch; the next scan retries", *key)
            return
        self._defaults[name] = version  # the switch: one assignment, no await around it
        self._extras.pop(key, None)
        if old is not None:
            self._extras[(name, old)] = None  # its pinned links go on; most recently used
            self._show(name, old)
        self._show(name, version)
        self._evict()
        log.info("%s: version %s is the default now (was %s)", name, version, old)

    def _scan(self) -> dict[str, dict[int, StoredVersion]]:
        """Every stored generator version whose manifest is valid and names its folder.
        Manifests are read again only when their folder's files change."""
        found: dict[str, dict[int, StoredVersion]] = {}
        folders = {
            (name, version): self.store.root / name / str(version)
            for name in self.store.names()
            for version in self.store.versions(name)
        }
        self._read = {f: self._read[f] for f in folders.values() if f in self._read}
        for (name, version), folder in folders.items():
            if (stored := self._read_version(folder, name, version)) is not None:
                found.setdefault(name, {})[version] = stored
        return found

    def _read_version(self, folder: Path, name: str, version: int) -> StoredVersion | None:
        files = folder_files(folder)
        known = self._read.get(folder)
        if known is not None and known[0] == files:
            manifest = known[1]
        else:
            manifest = None
            try:
                manifest = read_manifest(folder)
                if (manifest.name, manifest.version) != (name, version):
                    raise StoreError(f"{folder}: its manifest says {manifest.ref}")
            except StoreError as exc:
                log.warning("ignored until it is whole: %s", exc)
                manifest = None
            self._read[folder] = (files, manifest)
        if manifest is None or manifest.kind != "generator":
            return None
        return StoredVersion(manifest, files)

    def _stored_version(self, key: Key) -> StoredVersion | None:
        return self._stored.get(key[0], {}).get(key[1])

    # --- metrics ------------------------------------------------------------------------

    def _show(self, name: str, version: int) -> None:
        served = self._served[(name, version)]
        default = self._defaults.get(name) == version
        self.metrics.show_model(
            served.manifest, served.engine.device, served.engine.precision, default
        )

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
        """Exactly ``name``/``version``: any stored version, loaded on first use."""
        self.default(name)  # ready, and a name this service serves
        key = (name, version)
        served = self._served.get(key)
        if served is None:
            served = await self._load_on_demand(key)
        if key in self._extras:
            self._extras.move_to_end(key)
        return served

    async def _load_on_demand(self, key: Key) -> ServedModel:
        name = key[0]
        if self._stored_version(key) is None:
            versions = sorted(self._stored.get(name, {}))
            raise ApiError(
                404,
                f"version: not stored; this service has {name} "
                f"version{'s' if len(versions) > 1 else ''} {', '.join(map(str, versions))}",
                "version",
            )
        if not self._may_retry(key):
            raise unloadable()
        try:
            return await asyncio.wait_for(
                asyncio.shield(self._load_task(key)), self.settings.request_timeout_s
            )
        except TimeoutError:
            raise ApiError(
                503, "version: still loading; try again shortly", "version", {"Retry-After": "1"}
            ) from None
        except Exception:
            raise unloadable() from None

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
        """The versions loaded now (defaults and extras)."""
        return list(self._served.values())

    def defaults(self) -> dict[str, int]:
        """name → the version unpinned requests get."""
        return dict(self._defaults)

    def stored(self) -> list[Manifest]:
        """Every stored generator version, as the last scan found the store."""
        return [
            self._stored[name][version].manifest
            for name in sorted(self._stored)
            for version in sorted(self._stored[name])
        ]


async def fit_truncation(engine: Engine) -> None:
    started = time.perf_counter()
    try:
        await asyncio.to_thread(engine.fit_truncation)
    except Exception:
        log.exception("%s: computing truncation's class means failed", engine.manifest.ref)
        raise
    seconds = time.perf_counter() - started
    log.info("%s: truncation's class means ready after %.1f s", engine.manifest.ref, seconds)


def unloadable() -> ApiError:
    # The reason names server paths: the log has it, clients get this.
    return ApiError(
        503,
        "version: stored, but it could not be loaded; the service log says why",
        "version",
        {"Retry-After": str(int(RETRY_FAILED_LOAD_S))},
    )


def folder_files(folder: Path) -> Files:
    try:
        with os.scandir(folder) as entries:
            return tuple(sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries))
    except OSError:
        return ()
