"""Prediction endpoints: one task, or several tasks from one encoding per image."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service.api.deps import (
    Authenticated,
    CapacityChecked,
    EngineDep,
    ImagesDep,
    SettingsDep,
    TaskDep,
    parse_task_list,
)
from service.api.errors import documented
from service.api.schemas import (
    ImagePredictions,
    ModelRef,
    MultiPredictResponse,
    Prediction,
    TaskPredictResponse,
)

router = APIRouter(prefix="/v1", tags=["predict"], dependencies=[Authenticated])

ERRORS = documented(400, 401, 404, 408, 413, 415, 422, 429, 500, 503, 504)
# At least one name: something other than commas and white space (an empty list is a 422).
TASK_LIST_PATTERN = r"[^,\s]"
DistributionFlag = Annotated[
    bool, Query(description="Include the full probability distribution over ranks")
]
FacesFlag = Annotated[
    bool,
    Query(
        description="Detect faces and answer per face (largest first, each with its box in "
        "the upright image and the detector's score) instead of per image; an image with no "
        "face gets `faces: []`. Each face counts as one image for admission."
    ),
]


@router.post(
    "/{task}/predict",
    operation_id="predict",
    summary="Predict one task",
    response_model=TaskPredictResponse,
    response_model_exclude_none=True,
    responses=ERRORS,
)
async def predict_task(
    task: TaskDep,
    images: ImagesDep,
    engine: EngineDep,
    settings: SettingsDep,
    distribution: DistributionFlag = True,
    faces: FacesFlag = False,
) -> TaskPredictResponse:
    """Predict one ordinal task (e.g. ``age``) for each uploaded image, in upload order;
    with ``faces=true``, for each face of each image."""
    answers = await engine.predict(images, [task], settings.request_timeout_s, faces)
    return TaskPredictResponse(
        task=task,
        model=ModelRef.of(answers.models[task]),
        predictions=[
            Prediction.of_faces(result, task, distribution)
            if faces
            else Prediction.of(result.predictions[task], result.name, distribution)
            for result in answers.images
        ],
    )


@router.post(
    "/predict",
    operation_id="predictTasks",
    summary="Predict several tasks",
    response_model=MultiPredictResponse,
    response_model_exclude_none=True,
    responses=ERRORS,
    dependencies=[CapacityChecked],
)
async def predict_tasks(
    images: ImagesDep,
    engine: EngineDep,
    settings: SettingsDep,
    tasks: Annotated[
        str | None,
        Query(
            description="Comma-separated task names; all served tasks if omitted",
            pattern=TASK_LIST_PATTERN,
        ),
    ] = None,
    distribution: DistributionFlag = True,
    faces: FacesFlag = False,
) -> MultiPredictResponse:
    """Predict several tasks per image (or per face); tasks sharing a backbone share one
    encoding per image (or face)."""
    names = sorted(engine.tasks) if tasks is None else parse_task_list(tasks)
    answers = await engine.predict(images, names, settings.request_timeout_s, faces)
    return MultiPredictResponse(
        tasks=names,
        models={name: ModelRef.of(answers.models[name]) for name in names},
        predictions=[ImagePredictions.of(result, distribution) for result in answers.images],
    )
