"""FastAPI dependencies shared by the routers: the host, the leased engine, settings, keys.

All are ``async def``: FastAPI would run plain functions in a thread pool, a needless
thread hop per dependency per request. Order matters in a handler's signature: the
upload is read (and bounded in time) *before* the engine is leased, so a slow client
never pins an engine across a reload or holds a drain open.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from service.api.uploads import read_images
from service.config import Settings
from service.engine.engine import InferenceEngine, NamedImage
from service.engine.lifecycle import EngineHost
from service.errors import Unauthorized


async def get_host(request: Request) -> EngineHost:
    host: EngineHost = request.app.state.host
    return host


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_images(request: Request) -> list[NamedImage]:
    settings: Settings = request.app.state.settings
    return await read_images(request, settings.max_images_per_request, settings.upload_timeout_s)


async def check_task(task: str, request: Request) -> str:
    """Refuse an unknown task, or a full encoder, before the upload is read (the engine
    checks again when the request is admitted for real)."""
    host: EngineHost = request.app.state.host
    if host.engine is not None:
        host.engine.check_admission([task])
    return task


async def check_capacity(request: Request) -> None:
    """For multi-task predict: refuse before the upload is read when every encoder the
    request could use is past the target wait."""
    host: EngineHost = request.app.state.host
    engine = host.engine
    if engine is not None:
        engine.check_admission(list(engine.tasks))


async def get_engine(request: Request) -> AsyncIterator[InferenceEngine]:
    """The engine this request runs on, held until the request is done (hot reload safe)."""
    host: EngineHost = request.app.state.host
    with host.lease(arrived=request.scope["state"].get("arrived")) as engine:
        yield engine


def _check_key(request: Request, keys: list[bytes]) -> None:
    """``Authorization: Bearer <key>`` or ``X-API-Key: <key>``, compared in constant time."""
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    presented = (
        token.strip() if scheme.lower() == "bearer" else request.headers.get("x-api-key", "")
    )
    matched = False
    for key in keys:  # compare with every key, in constant time each
        matched |= hmac.compare_digest(presented.encode(), key)
    if not presented or not matched:
        raise Unauthorized(
            "a valid API key is required (Authorization: Bearer <key> or X-API-Key)",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def require_api_key(request: Request) -> None:
    keys: list[bytes] = request.app.state.api_keys
    if keys:
        _check_key(request, keys)


async def require_admin_key(request: Request) -> None:
    _check_key(request, request.app.state.admin_keys)


HostDep = Annotated[EngineHost, Depends(get_host)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
TaskDep = Annotated[str, Depends(check_task)]
CapacityChecked = Depends(check_capacity)
ImagesDep = Annotated[list[NamedImage], Depends(get_images)]
EngineDep = Annotated[InferenceEngine, Depends(get_engine)]
Authenticated = Depends(require_api_key)
AdminAuthenticated = Depends(require_admin_key)
