"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.api.state import ServiceState
from service.config import Settings
from service.engine.engine import InferenceEngine


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


def get_engine(request: Request) -> InferenceEngine:
    return get_state(request).ready_engine()


def get_settings(request: Request) -> Settings:
    return get_state(request).settings


StateDep = Annotated[ServiceState, Depends(get_state)]
EngineDep = Annotated[InferenceEngine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
