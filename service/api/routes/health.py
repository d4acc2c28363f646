"""Liveness, readiness and the Prometheus exposition."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.deps import HostDep
from service.api.errors import documented
from service.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    operation_id="health",
    summary="Liveness",
    response_model=Health,
    response_model_exclude_none=True,
    responses=documented(),
)
async def healthz() -> Health:
    """The process is up and its event loop answers."""
    return Health(status="ok")


@router.get(
    "/readyz",
    operation_id="ready",
    summary="Readiness",
    response_model=Health,
    responses={
        **documented(),
        503: {"model": Health, "description": "Loading, failed to load, or draining"},
    },
)
async def readyz(state: HostDep) -> JSONResponse:
    """200 when the served tasks are loaded and their backbones warmed up. A task that
    failed alone (``OCLIP_STRICT_REGISTRY`` off) is named in ``detail``: the others serve."""
    if state.ready and state.engine is not None:
        failed = state.engine.failed_tasks
        detail = "; ".join(f"task {t} not served: {why}" for t, why in failed.items()) or None
        body = Health(status="degraded" if failed else "ready", detail=detail)
        return JSONResponse(body.model_dump(exclude_none=True))
    if state.draining:
        body = Health(status="draining", detail="shutting down; finishing accepted requests")
    else:
        body = Health(status="failed" if state.load_error else "loading", detail=state.load_error)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=503)


@router.get(
    "/metrics",
    operation_id="metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        **documented(),
        200: {
            "description": "The Prometheus text exposition",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
    },
)
async def prometheus_metrics() -> Response:
    """Every ``oclip_*`` series, for a Prometheus scrape."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
