"""FastAPI dependencies shared by the routers: state, the leased engine, settings, API keys.

All are ``async def``: FastAPI would run plain functions in a thread pool, a needless
thread hop per dependency per request.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from service.api.state import ServiceState
from service.config import Settings
from service.engine.engine import InferenceEngine
from service.errors import Unauthorized


async def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


async def get_engine(request: Request) -> AsyncIterator[InferenceEngine]:
    """The engine this request runs on, held until the request is done (hot reload safe)."""
    state: ServiceState = request.app.state.service
    with state.lease() as engine:
        yield engine


async def get_settings(request: Request) -> Settings:
    state: ServiceState = request.app.state.service
    return state.settings


async def require_api_key(request: Request) -> None:
    """``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` when keys are configured."""
    keys: list[bytes] = request.app.state.api_keys
    if not keys:
        return
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


StateDep = Annotated[ServiceState, Depends(get_state)]
EngineDep = Annotated[InferenceEngine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
Authenticated = Depends(require_api_key)
