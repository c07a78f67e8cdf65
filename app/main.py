"""The app factory: settings in, a FastAPI app out; its lifespan owns start-up and shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.errors import install_error_handlers
from app.metrics import Metrics
from app.middleware import BodyLimit, RequestMetrics
from app.routes import router
from app.service import ImageService
from app.settings import Settings, get_settings

log = logging.getLogger("app")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = ImageService(settings, metrics)
        # Loading is quick and must fail loudly (a bad file stops start-up); warming up
        # is slower and runs in the background so /healthz answers and /readyz says 503.
        await service.start()
        app.state.service = service
        warm = asyncio.create_task(service.warm_up(), name="warm-up")
        try:
            yield
        finally:
            warm.cancel()
            await service.stop()

    app = FastAPI(
        title="This X Does Not Exist",
        description="Images of things that do not exist, painted by GAN generators.",
        lifespan=lifespan,
    )
    app.state.settings, app.state.metrics = settings, metrics
    install_error_handlers(app)
    app.include_router(router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)  # outermost: sees every status
    return app
