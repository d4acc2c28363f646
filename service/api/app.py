"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from service import __version__
from service.api.deps import UploadSlots
from service.api.errors import install_error_handlers
from service.api.middleware import BodySizeLimitMiddleware, InFlight, RequestContextMiddleware
from service.api.openapi import install_openapi
from service.api.routes import admin, health, models, oip, page, predict
from service.engine.factory import load_engine
from service.engine.lifecycle import EngineHost
from service.settings import Settings

GRPC_GRACE_S = 5.0


async def start_grpc(host: EngineHost, settings: Settings, api_keys: list[bytes]) -> Any:
    """The Open Inference Protocol's gRPC service when ``OCLIP_GRPC_PORT`` is set."""
    if not settings.grpc_port:
        return None
    try:
        from service.api.oip.grpc_server import start_grpc as start
    except ImportError as exc:
        raise RuntimeError(
            f"OCLIP_GRPC_PORT needs the grpc extra (pip install 'ordinal-service[grpc]'): {exc}"
        ) from exc
    return await start(host, settings, api_keys)


def create_app(settings: Settings | None = None, host: EngineHost | None = None) -> FastAPI:
    """The app for ``settings``. ``host`` defaults to one that loads ``settings.model_store``
    in the background when the app starts (tests pass one that is already loaded)."""
    settings = settings or Settings()
    if host is None:
        engine_config = settings.engine_config()
        strict = settings.strict_registry
        host = EngineHost(lambda: load_engine(settings.model_store, engine_config, strict))
    serving = host

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if serving.engine is None:
            serving.start_loading()
        grpc_server = await start_grpc(serving, settings, app.state.api_keys)
        yield
        if grpc_server is not None:
            await grpc_server.stop(GRPC_GRACE_S)
        await asyncio.to_thread(serving.stop)

    app = FastAPI(
        title="OrdinalCLIP ordinal-attribute prediction service",
        version=__version__,
        description="Predicts ordered quantities (age, aesthetic grade, decade) from images, "
        "with the full probability distribution over ranks.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.host = host
    app.state.in_flight = InFlight()
    app.state.upload_slots = UploadSlots(settings.max_concurrent_uploads)
    app.state.api_keys = [key.encode() for key in settings.load_api_keys()]
    app.state.admin_keys = [key.encode() for key in settings.admin_keys()]
    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(
        RequestContextMiddleware, in_flight=app.state.in_flight, draining=lambda: host.draining
    )
    routers = (predict.router, models.router, health.router, page.router, oip.server, oip.models)
    for router in routers:
        app.include_router(router)
    if app.state.admin_keys:
        app.include_router(admin.router)
    install_openapi(app, settings, host)
    return app
