"""Operator endpoints: hot reload of the registry's active versions."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import Authenticated, StateDep
from service.api.schemas import ErrorResponse, ModelRef, ReloadResponse

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Authenticated])


@router.post(
    "/reload",
    response_model=ReloadResponse,
    responses={401: {"model": ErrorResponse}, 409: {"model": ErrorResponse}},
)
async def reload_models(state: StateDep) -> ReloadResponse:
    """Load the registry's active versions, verify checksums and warm up, then swap them in
    atomically. On any failure the previous models keep serving and the answer is 409."""
    engine = await state.reload()
    return ReloadResponse(
        status="reloaded", models=[ModelRef.of(t.manifest) for t in engine.tasks.values()]
    )
