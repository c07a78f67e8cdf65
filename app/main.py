"""The app factory: settings in, a FastAPI app out; its lifespan owns start-up and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from app.access import AccessLog, flush_access_log
from app.clients import ClientAddresses, parse_networks
from app.errors import NOSNIFF, install_error_handlers
from app.hot_path import HotPath
from app.latent_routes import router as latent_router
from app.metrics import Metrics
from app.middleware import (
    BodyDeadline,
    BodyLimit,
    CancelOnDisconnect,
    DefaultHeaders,
    HeadAsGet,
    RequestMetrics,
)
from app.openapi import install_openapi
from app.pages import CONTENT_SECURITY_POLICY, STATIC
from app.pages import router as pages_router
from app.routes import router
from app.service import ImageService
from app.settings import Settings, get_settings
from app.workers import WorkerSlots

# What a cross-site page may read from a response, when CORS is on.
EXPOSED_HEADERS = [
    "X-Seed",
    "X-Model",
    "X-Model-Version",
    "X-Category",
    "X-Cache",
    "X-Frames",
    "X-Tiles",
    "X-Request-ID",
    "ETag",
    "Retry-After",
]


def create_app(
    settings: Settings | None = None,
    on_failure: Callable[[BaseException], None] = lambda exc: None,
    workers: WorkerSlots | None = None,
) -> FastAPI:
    """``on_failure`` hears of a fatal start-up error (a bad model file): ``python -m app``
    stops serving on it; without it the service stays up, unready and unhealthy.
    ``workers``: this process is one of several (app/workers.py); ready means all ready."""
    settings = settings or get_settings()
    metrics = Metrics(multiprocess_dir() if workers is not None else None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = app.state.service = ImageService(settings, metrics, on_failure, workers)
        metrics.ready_check = lambda: service.readiness() is None
        # uvicorn binds its socket only after this start-up returns: loading and warming
        # up in the background is what lets /healthz answer now and /readyz say 503.
        starting = asyncio.create_task(service.start(), name="start-up")
        try:
            yield
        finally:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            await service.stop()
            flush_access_log()  # its last lines: uvicorn may end the process by a signal

    # FastAPIOffline: /docs and /redoc load their scripts from the app (a package ships
    # them), not from a CDN; no validator badge (it would send the schema's URL away).
    app = FastAPIOffline(
        title="This X Does Not Exist",
        description="Images of things that do not exist, painted by GAN generators.",
        lifespan=lifespan,
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.state.settings, app.state.metrics = settings, metrics
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(latent_router)
    app.include_router(pages_router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")  # the page's files
    install_openapi(app, settings)
    # Added innermost first: a request passes them bottom to top.
    app.add_middleware(HotPath, fastapi=app)  # /random and pinned seeds: FastAPI skipped
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(BodyDeadline, timeout_s=settings.body_timeout_s)
    app.add_middleware(CancelOnDisconnect)
    if settings.cors_origins:  # closed unless configured: no Access-Control-* at all
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "HEAD", "POST"],
            allow_headers=["Content-Type", "If-None-Match", "X-Request-ID"],
            expose_headers=EXPOSED_HEADERS,
            max_age=600,
        )
    app.add_middleware(DefaultHeaders, headers={**NOSNIFF, **CONTENT_SECURITY_POLICY})
    app.add_middleware(HeadAsGet)
    app.add_middleware(RequestMetrics, metrics=metrics)  # sees every status
    clients = ClientAddresses(parse_networks(settings.trusted_proxies))
    app.add_middleware(AccessLog, clients=clients, enabled=settings.access_log)  # outermost
    return app


def multiprocess_dir() -> Path:
    """Where the supervisor keeps every worker's counts (it sets the variable)."""
    return Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
