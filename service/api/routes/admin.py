"""Operator endpoints: hot reload of the registry's active versions.

Mounted only when admin keys are configured (``OCLIP_ADMIN_API_KEYS``), and guarded by
them: a reload costs a load, a warm-up and a calibration, so it is not for anyone who
reaches the port. SIGHUP stays available to the local operator.
"""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import AdminAuthenticated, HostDep
from service.api.errors import documented
from service.api.schemas import ModelRef, ReloadResponse

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminAuthenticated])


@router.post(
    "/reload",
    operation_id="reload",
    response_model=ReloadResponse,
    responses=documented(401, 409),
)
async def reload_models(host: HostDep) -> ReloadResponse:
    """Load the registry's active versions, verify checksums and warm up, then swap them in
    atomically. On any failure the previous models keep serving and the answer is 409."""
    engine = await host.reload()
    return ReloadResponse(
        status="reloaded", models=[ModelRef.of(task.ref) for task in engine.tasks.values()]
    )
