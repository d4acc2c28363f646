"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service import __version__
from service.api.errors import install_error_handlers
from service.api.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from service.api.routes import admin, health, models, predict
from service.api.state import ServiceState
from service.config import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    state = ServiceState(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.start_loading()
        yield
        state.stop()

    app = FastAPI(
        title="OrdinalCLIP ordinal-attribute prediction service",
        version=__version__,
        description="Predicts ordered quantities (age, aesthetic grade, decade) from images, "
        "with the full probability distribution over ranks.",
        lifespan=lifespan,
    )
    app.state.service = state
    app.state.api_keys = [key.encode() for key in settings.load_api_keys()]
    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(RequestContextMiddleware)
    for router in (predict.router, models.router, admin.router, health.router):
        app.include_router(router)
    return app
