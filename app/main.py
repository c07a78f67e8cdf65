"""The app factory: settings in, a FastAPI app out; its lifespan owns start-up and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.errors import NOSNIFF, install_error_handlers
from app.metrics import Metrics
from app.middleware import BodyDeadline, BodyLimit, DefaultHeaders, RequestMetrics
from app.openapi import install_openapi
from app.routes import router
from app.service import ImageService
from app.settings import Settings, get_settings


def create_app(
    settings: Settings | None = None,
    on_failure: Callable[[BaseException], None] = lambda exc: None,
) -> FastAPI:
    """``on_failure`` hears of a fatal start-up error (a bad model file): ``python -m app``
    stops serving on it; without it the service stays up, unready and unhealthy."""
    settings = settings or get_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = app.state.service = ImageService(settings, metrics, on_failure)
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

    app = FastAPI(
        title="This X Does Not Exist",
        description="Images of things that do not exist, painted by GAN generators.",
        lifespan=lifespan,
    )
    app.state.settings, app.state.metrics = settings, metrics
    install_error_handlers(app)
    app.include_router(router)
    install_openapi(app, settings)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(BodyDeadline, timeout_s=settings.body_timeout_s)
    app.add_middleware(DefaultHeaders, headers=NOSNIFF)
    app.add_middleware(RequestMetrics, metrics=metrics)  # outermost: sees every status
    return app
