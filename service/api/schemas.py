"""Request and response bodies of the v1 API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from service.engine import post as results
from service.engine.core.runtimes.base import RuntimeInfo
from service.imaging.faces import Box
from service.registry.manifest import BackboneManifest, FaceCropSpec, TaskManifest


class Interval(BaseModel):
    level: float = Field(description="Probability mass inside [low, high], e.g. 0.9")
    low: float
    high: float


class Distribution(BaseModel):
    values: list[float]
    labels: list[str] | None = None
    probabilities: list[float]


def _estimate(answer: results.TaskPrediction, with_distribution: bool) -> dict[str, Any]:
    """The prediction fields shared by an image-level and a face-level answer."""
    distribution = None
    if with_distribution:
        distribution = Distribution(
            values=answer.values,
            labels=answer.labels,
            probabilities=answer.probabilities.tolist(),
        )
    interval = answer.interval
    return {
        "expected": answer.expected,
        "mode": answer.mode,
        "median": answer.median,
        "interval": Interval(level=interval.level, low=interval.low, high=interval.high),
        "distribution": distribution,
    }


class FaceBox(BaseModel):
    """In pixels of the upright image (after EXIF orientation), as a viewer displays it."""

    x: int
    y: int
    width: int
    height: int

    @classmethod
    def of(cls, box: Box) -> FaceBox:
        return cls(x=box.x, y=box.y, width=box.width, height=box.height)


SCORE = Field(description="Detector confidence in 0..1: a ranking, not a probability")
FACES_FOUND = Field(
    None,
    description="With faces=true: faces detected, before OCLIP_MAX_FACES_PER_IMAGE kept the "
    "largest (more than len(faces) when some were dropped)",
)


class FacePrediction(BaseModel):
    """One face of an image (POST /v1/{task}/predict?faces=true)."""

    box: FaceBox
    score: float = SCORE
    expected: float
    mode: float
    median: float
    interval: Interval
    distribution: Distribution | None = None

    @classmethod
    def of(cls, face: results.FaceResult, task: str, with_distribution: bool) -> FacePrediction:
        estimate = _estimate(face.predictions[task], with_distribution)
        return cls(box=FaceBox.of(face.box), score=face.score, **estimate)


class Prediction(BaseModel):
    """One image's answer; with faces=true, ``faces`` replaces the image-level fields."""

    filename: str | None = None
    expected: float | None = Field(None, description="Σ p·value: the mean of the distribution")
    mode: float | None = Field(None, description="Most likely rank value")
    median: float | None = Field(
        None, description="Smallest value whose cumulative probability ≥ 0.5"
    )
    interval: Interval | None = None
    distribution: Distribution | None = None
    faces: list[FacePrediction] | None = Field(
        None, description="With faces=true: one answer per face, largest first ([] if none)"
    )
    faces_found: int | None = FACES_FOUND

    @classmethod
    def of(
        cls, answer: results.TaskPrediction, filename: str | None, with_distribution: bool
    ) -> Prediction:
        return cls(filename=filename, **_estimate(answer, with_distribution))

    @classmethod
    def of_faces(
        cls, result: results.ImageResult, task: str, with_distribution: bool
    ) -> Prediction:
        faces = result.faces or []
        return cls(
            filename=result.name,
            faces=[FacePrediction.of(face, task, with_distribution) for face in faces],
            faces_found=result.faces_found,
        )


class ModelRef(BaseModel):
    task: str
    version: str
    backbone: str

    @classmethod
    def of(cls, ref: results.ModelRef) -> ModelRef:
        return cls(task=ref.task, version=ref.version, backbone=ref.backbone)


class TaskPredictResponse(BaseModel):
    task: str
    model: ModelRef
    predictions: list[Prediction]


class FaceResults(BaseModel):
    """One face of an image (POST /v1/predict?faces=true): every asked task."""

    box: FaceBox
    score: float = SCORE
    results: dict[str, Prediction] = Field(description="task name -> prediction")

    @classmethod
    def of(cls, face: results.FaceResult, with_distribution: bool) -> FaceResults:
        return cls(
            box=FaceBox.of(face.box),
            score=face.score,
            results=answers(face.predictions, with_distribution),
        )


class ImagePredictions(BaseModel):
    filename: str | None = None
    results: dict[str, Prediction] | None = Field(
        None, description="task name -> prediction (without faces=true)"
    )
    faces: list[FaceResults] | None = Field(
        None, description="With faces=true: one entry per face, largest first ([] if none)"
    )
    faces_found: int | None = FACES_FOUND

    @classmethod
    def of(cls, result: results.ImageResult, with_distribution: bool) -> ImagePredictions:
        if result.faces is None:
            return cls(filename=result.name, results=answers(result.predictions, with_distribution))
        return cls(
            filename=result.name,
            faces=[FaceResults.of(face, with_distribution) for face in result.faces],
            faces_found=result.faces_found,
        )


def answers(
    predictions: dict[str, results.TaskPrediction], with_distribution: bool
) -> dict[str, Prediction]:
    return {
        name: Prediction.of(answer, None, with_distribution) for name, answer in predictions.items()
    }


class MultiPredictResponse(BaseModel):
    tasks: list[str]
    models: dict[str, ModelRef]
    predictions: list[ImagePredictions]


class BackboneInfo(BaseModel):
    id: str
    architecture: str
    weights: dict[str, Any]
    image_size: int
    embed_dim: int
    runtime: dict[str, Any] | None = Field(
        None, description="Runtime serving it, requested vs chosen, measured rates and parity."
    )

    @classmethod
    def of(cls, manifest: BackboneManifest, runtime: RuntimeInfo | None = None) -> BackboneInfo:
        return cls(
            runtime=None if runtime is None else runtime.as_dict(),
            id=manifest.id,
            architecture=manifest.architecture,
            weights=manifest.weights.model_dump(exclude_none=True),
            image_size=manifest.preprocess.image_size,
            embed_dim=manifest.embed_dim,
        )


class ModelInfo(BaseModel):
    task: str
    version: str
    description: str | None = None
    unit: str | None = None
    num_ranks: int
    values: list[float]
    labels: list[str] | None = None
    logit_scale: float = Field(description="the scale served (calibrated, when calibrated)")
    calibrated: bool
    calibration: dict[str, Any] | None = Field(
        None, description="temperature, interval mass, n, coverage and NLL before and after"
    )
    crop: FaceCropSpec | None = Field(
        None,
        description="the face crop it was trained on (detector, margin, size), which "
        "faces=true repeats; null: trained on whole images",
    )
    backbone: BackboneInfo
    metrics: dict[str, Any]
    provenance: dict[str, Any]
    created_at: str | None = None

    @classmethod
    def of(
        cls, manifest: TaskManifest, backbone: BackboneManifest, runtime: RuntimeInfo | None = None
    ) -> ModelInfo:
        return cls(
            task=manifest.task,
            version=manifest.version,
            description=manifest.description,
            unit=manifest.unit,
            num_ranks=manifest.num_ranks,
            values=manifest.values,
            labels=manifest.labels,
            logit_scale=manifest.serving_logit_scale(),
            calibrated=manifest.calibration is not None,
            calibration=None if manifest.calibration is None else manifest.calibration.model_dump(),
            crop=manifest.crop,
            backbone=BackboneInfo.of(backbone, runtime),
            metrics=manifest.metrics,
            provenance=manifest.provenance,
            created_at=manifest.created_at,
        )


class ModelList(BaseModel):
    models: list[ModelInfo]


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable error code")
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ReloadResponse(BaseModel):
    status: str
    models: list[ModelRef]


class Health(BaseModel):
    status: str
    detail: str | None = None
