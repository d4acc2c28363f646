"""Request and response bodies of the v1 API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from service.engine import results
from service.engine.runtimes.base import RuntimeInfo
from service.registry.manifest import BackboneManifest, TaskManifest


class Interval(BaseModel):
    level: float = Field(description="Probability mass inside [low, high], e.g. 0.9")
    low: float
    high: float


class Distribution(BaseModel):
    values: list[float]
    labels: list[str] | None = None
    probabilities: list[float]


class Prediction(BaseModel):
    filename: str | None = None
    expected: float = Field(description="Σ p·value: the mean of the predicted distribution")
    mode: float = Field(description="Most likely rank value")
    median: float = Field(description="Smallest value whose cumulative probability ≥ 0.5")
    interval: Interval
    distribution: Distribution | None = None

    @classmethod
    def of(
        cls, answer: results.TaskPrediction, filename: str | None, with_distribution: bool
    ) -> Prediction:
        distribution = None
        if with_distribution:
            distribution = Distribution(
                values=answer.values,
                labels=answer.labels,
                probabilities=answer.probabilities.tolist(),
            )
        interval = answer.interval
        return cls(
            filename=filename,
            expected=answer.expected,
            mode=answer.mode,
            median=answer.median,
            interval=Interval(level=interval.level, low=interval.low, high=interval.high),
            distribution=distribution,
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


class ImagePredictions(BaseModel):
    filename: str | None = None
    results: dict[str, Prediction] = Field(description="task name -> prediction")


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
