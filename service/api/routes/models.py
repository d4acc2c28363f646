"""Model metadata: what each served task predicts and where its version came from."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import Authenticated, EngineDep
from service.api.errors import documented
from service.api.schemas import ModelInfo, ModelList

router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=[Authenticated])


@router.get(
    "",
    operation_id="listModels",
    summary="List the served tasks",
    response_model=ModelList,
    responses=documented(401, 503),
)
async def list_models(engine: EngineDep) -> ModelList:
    """Every served task with its rank values, labels, version and backbone."""
    return ModelList(models=[ModelInfo.of(*engine.describe(name)) for name in sorted(engine.tasks)])


@router.get(
    "/{task}",
    operation_id="getModel",
    summary="Describe one task",
    response_model=ModelInfo,
    responses=documented(401, 404, 422, 503),
)
async def get_model(task: str, engine: EngineDep) -> ModelInfo:
    """One task's metadata, metrics and provenance."""
    return ModelInfo.of(*engine.describe(task))
