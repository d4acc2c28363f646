"""The Open Inference Protocol's REST endpoints (KServe "v2"), beside v1: the same engine
call, admission, API keys, error table and metrics; errors in the protocol's shape (see
``api/errors.py``). Its contract is the protocol's, so these stay out of /openapi.json."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from service.api.deps import Authenticated, BodyDep, EngineDep, HostDep, SettingsDep, TaskDep
from service.api.errors import OIP_PREFIX
from service.api.oip import rest
from service.api.oip.infer import model_metadata, run_infer, served_version, server_metadata

server = APIRouter(prefix=OIP_PREFIX, tags=["oip"], include_in_schema=False)
models = APIRouter(
    prefix=f"{OIP_PREFIX}/models",
    tags=["oip"],
    include_in_schema=False,
    dependencies=[Authenticated],
)


async def path_version(request: Request) -> str | None:
    """The ``{version}`` of a versioned path; None on the unversioned form."""
    return request.path_params.get("version")


VersionDep = Annotated[str | None, Depends(path_version)]


@server.get("")
async def metadata() -> dict[str, Any]:
    """Server name, version and protocol extensions."""
    return server_metadata()


@server.get("/health/live")
async def live() -> dict[str, bool]:
    return {"live": True}


@server.get("/health/ready")
async def ready(host: HostDep) -> JSONResponse:
    """200 once the models are loaded and warmed up, 503 while loading or draining (as
    /readyz)."""
    return JSONResponse({"ready": host.ready}, status_code=200 if host.ready else 503)


@models.get("/{task}")
@models.get("/{task}/versions/{version}")
async def model(task: str, engine: EngineDep, version: VersionDep) -> dict[str, Any]:
    """The task's versions, its image input and every output with datatypes and shapes."""
    return model_metadata(engine, task, version)


@models.get("/{task}/ready")
@models.get("/{task}/versions/{version}/ready")
async def model_ready(task: str, engine: EngineDep, version: VersionDep) -> dict[str, Any]:
    """200 when the task (at that version) is served; 404 or 503 (failed to load) if not."""
    return {"name": task, "version": served_version(engine, task, version), "ready": True}


@models.post("/{task}/infer")
@models.post("/{task}/versions/{version}/infer")
async def infer(
    task: TaskDep,
    body: BodyDep,
    engine: EngineDep,
    settings: SettingsDep,
    request: Request,
    version: VersionDep,
) -> Response:
    """Predict ``task`` for each element of the BYTES input ``image``."""
    header_length = request.headers.get(rest.HEADER_LENGTH)
    limit = settings.max_images_per_request
    call, plan = rest.parse_infer(body, header_length, task, version, limit)
    answer = await run_infer(engine, call, settings.request_timeout_s)
    return rest.infer_response(answer, plan)
