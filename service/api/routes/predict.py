"""Prediction endpoints: one task, or several tasks from one encoding per image."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from service.api.deps import Authenticated, EngineDep, SettingsDep
from service.api.schemas import (
    ErrorResponse,
    ImagePredictions,
    ModelRef,
    MultiPredictResponse,
    Prediction,
    TaskPredictResponse,
)
from service.api.uploads import IMAGE_UPLOAD_OPENAPI, read_images
from service.errors import InvalidRequest

router = APIRouter(prefix="/v1", tags=["predict"], dependencies=[Authenticated])

ERRORS = {
    status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 415, 422, 429, 503, 504)
}
DistributionFlag = Annotated[
    bool, Query(description="Include the full probability distribution over ranks")
]


@router.post(
    "/{task}/predict",
    response_model=TaskPredictResponse,
    response_model_exclude_none=True,
    responses=ERRORS,
    openapi_extra=IMAGE_UPLOAD_OPENAPI,
)
async def predict_task(
    task: str,
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    distribution: DistributionFlag = True,
) -> TaskPredictResponse:
    """Predict one ordinal task (e.g. ``age``) for each uploaded image, in upload order."""
    manifest = engine.task(task).manifest
    request.state.task = task  # a served task: a bounded metric label
    images = await read_images(request, settings.max_images_per_request)
    summaries = await engine.predict(images, [task], settings.request_timeout_s)
    return TaskPredictResponse(
        task=task,
        model=ModelRef.of(manifest),
        predictions=[
            Prediction.build(per_image[task], manifest, image.name, distribution)
            for image, per_image in zip(images, summaries, strict=True)
        ],
    )


@router.post(
    "/predict",
    response_model=MultiPredictResponse,
    response_model_exclude_none=True,
    responses=ERRORS,
    openapi_extra=IMAGE_UPLOAD_OPENAPI,
)
async def predict_tasks(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    tasks: Annotated[
        str | None, Query(description="Comma-separated task names; all served tasks if omitted")
    ] = None,
    distribution: DistributionFlag = True,
) -> MultiPredictResponse:
    """Predict several tasks per image; tasks sharing a backbone share one encoding."""
    names = sorted(engine.tasks) if tasks is None else _parse_task_list(tasks)
    manifests = {name: engine.task(name).manifest for name in names}
    request.state.task = "multi"
    images = await read_images(request, settings.max_images_per_request)
    summaries = await engine.predict(images, names, settings.request_timeout_s)
    return MultiPredictResponse(
        tasks=names,
        models={name: ModelRef.of(m) for name, m in manifests.items()},
        predictions=[
            ImagePredictions(
                filename=image.name,
                results={
                    name: Prediction.build(per_image[name], manifests[name], None, distribution)
                    for name in names
                },
            )
            for image, per_image in zip(images, summaries, strict=True)
        ],
    )


def _parse_task_list(raw: str) -> list[str]:
    names = list(dict.fromkeys(name.strip() for name in raw.split(",") if name.strip()))
    if not names:
        raise InvalidRequest("query parameter 'tasks' names no task")
    return names
