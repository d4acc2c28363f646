"""Model metadata: what each served task predicts and where its version came from."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import Authenticated, EngineDep
from service.api.schemas import BackboneInfo, ErrorResponse, ModelInfo, ModelList
from service.engine.engine import InferenceEngine

router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=[Authenticated])


def _info(engine: InferenceEngine, task: str) -> ModelInfo:
    manifest = engine.task(task).manifest
    backbone = engine.backbones[manifest.backbone].manifest
    return ModelInfo(
        task=manifest.task,
        version=manifest.version,
        description=manifest.description,
        unit=manifest.unit,
        num_ranks=manifest.num_ranks,
        values=manifest.values,
        labels=manifest.labels,
        logit_scale=manifest.logit_scale,
        backbone=BackboneInfo.of(backbone),
        metrics=manifest.metrics,
        provenance=manifest.provenance,
        created_at=manifest.created_at,
    )


@router.get(
    "",
    response_model=ModelList,
    responses={401: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
)
async def list_models(engine: EngineDep) -> ModelList:
    """Every served task with its rank values, labels, version and backbone."""
    return ModelList(models=[_info(engine, name) for name in sorted(engine.tasks)])


@router.get(
    "/{task}",
    response_model=ModelInfo,
    responses={s: {"model": ErrorResponse} for s in (401, 404, 503)},
)
async def get_model(task: str, engine: EngineDep) -> ModelInfo:
    """One task's metadata, metrics and provenance."""
    return _info(engine, task)
