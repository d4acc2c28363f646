"""The post stage: features -> rank distributions -> complete per-task answers, plus the
drift metrics. It runs off the event loop (numpy work per image).

It owns what the engine answers (complete, typed results that a client-facing layer only
maps) and the prototype matching, which the trainer's loss and validation use too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from service import metrics
from service.imaging.faces.types import Box
from service.registry import LoadedTask
from service.registry.manifest import TaskManifest

if TYPE_CHECKING:
    from service.engine.pre import Prepared, View


# -- what the engine answers ---------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    level: float  # the coverage promised to the client
    low: float
    high: float


@dataclass(frozen=True)
class ModelRef:
    task: str
    version: str
    backbone: str


@dataclass(frozen=True)
class TaskPrediction:
    """One task's answer for one image: every field a client sees."""

    model: ModelRef
    values: list[float]
    labels: list[str] | None
    unit: str | None
    expected: float
    mode: float
    median: float
    interval: Interval
    probabilities: np.ndarray  # R, float64, sums to 1


@dataclass(frozen=True)
class FaceResult:
    """One detected face (``faces=true``): where it is, and every asked task for its crop."""

    box: Box  # upright-image pixels (after EXIF orientation)
    score: float  # detector confidence in 0..1, a ranking
    predictions: dict[str, TaskPrediction] = field(default_factory=dict)  # task -> answer


@dataclass(frozen=True)
class Answers:
    """A request's answer: the version of each task that answered, and per image (in
    upload order) its predictions."""

    models: dict[str, ModelRef]  # task -> the version that answered
    images: list[ImageResult]


@dataclass(frozen=True)
class ImageResult:
    name: str
    predictions: dict[str, TaskPrediction] = field(default_factory=dict)  # task -> answer
    # With faces: one result per kept face, largest first (``predictions`` stays empty),
    # and how many faces were detected before the per-image limit.
    faces: list[FaceResult] | None = None
    faces_found: int = 0


# -- prototype matching: features -> rank distribution -> summary ----------------------
@dataclass(frozen=True)
class Summary:
    expected: float
    mode: float
    median: float
    interval_low: float
    interval_high: float
    level: float
    probabilities: np.ndarray  # R, float64, sums to 1


def rank_logits(
    features: torch.Tensor, prototypes: torch.Tensor, logit_scale: float | torch.Tensor
) -> torch.Tensor:
    """s * cos(image, prototype_r), in float32. N x D, R x D -> N x R.

    The trainer's loss and validation use this too, so training optimises exactly what
    the server computes. ``prototypes`` are L2-normalised (the registry stores them so).
    """
    image = torch.nn.functional.normalize(features.float(), dim=-1)
    return logit_scale * image @ prototypes.float().T


def rank_probabilities(
    features: torch.Tensor, prototypes: torch.Tensor, logit_scale: float | torch.Tensor
) -> torch.Tensor:
    """softmax(s * cos(image, prototype_r)) over ranks, in float32. N x D, R x D -> N x R."""
    return torch.softmax(rank_logits(features, prototypes, logit_scale), dim=-1)


def quantile(cdf: np.ndarray, values: np.ndarray, q: float) -> float:
    """The smallest rank value whose cumulative probability reaches ``q``."""
    index = int(np.searchsorted(cdf, q - 1e-9, side="left"))
    return float(values[min(index, len(values) - 1)])


def summarize(probabilities: np.ndarray, values: np.ndarray, level: float = 0.9) -> Summary:
    """Expected value, mode, median and the central ``level`` interval of one distribution."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    probabilities = probabilities / probabilities.sum()
    cdf = np.cumsum(probabilities)
    tail = (1.0 - level) / 2.0
    return Summary(
        expected=float(probabilities @ values),
        mode=float(values[int(np.argmax(probabilities))]),
        median=quantile(cdf, values, 0.5),
        interval_low=quantile(cdf, values, tail),
        interval_high=quantile(cdf, values, 1.0 - tail),
        level=level,
        probabilities=probabilities,
    )


# -- a served task's answers ------------------------------------------------------------
class ServedTask:
    """A served task version: its prototypes and everything needed to answer for it."""

    def __init__(self, loaded: LoadedTask, interval_level: float) -> None:
        manifest = loaded.manifest
        self.manifest: TaskManifest = manifest
        self.prototypes = loaded.prototypes
        self.values = np.asarray(manifest.values, dtype=np.float64)
        self.ref = ModelRef(manifest.task, manifest.version, manifest.backbone)
        self.interval_level = interval_level  # the coverage promised to clients
        # What a calibrated version serves (else the trained scale and the nominal mass).
        self.logit_scale = manifest.serving_logit_scale()
        self.interval_mass = manifest.interval_mass(interval_level)

    @property
    def name(self) -> str:
        return self.manifest.task

    def answer(self, features: torch.Tensor) -> list[TaskPrediction]:
        """One complete prediction per feature row, observed by the drift metrics."""
        probabilities = rank_probabilities(features, self.prototypes, self.logit_scale)
        answers = [self._prediction(row) for row in probabilities.double().numpy()]
        self._observe(answers)
        return answers

    def _prediction(self, probabilities: np.ndarray) -> TaskPrediction:
        summary = summarize(probabilities, self.values, self.interval_mass)
        manifest = self.manifest
        return TaskPrediction(
            model=self.ref,
            values=manifest.values,
            labels=manifest.labels,
            unit=manifest.unit,
            expected=summary.expected,
            mode=summary.mode,
            median=summary.median,
            interval=Interval(self.interval_level, summary.interval_low, summary.interval_high),
            probabilities=summary.probabilities,
        )

    def _observe(self, answers: list[TaskPrediction]) -> None:
        """The predicted value and its position in the range: inputs drifting shows here."""
        low, high = self.values[0], self.values[-1]
        metrics.IMAGES.labels(self.name).inc(len(answers))
        for answer in answers:
            metrics.PREDICTED_VALUE.labels(self.name).observe(answer.expected)
            metrics.PREDICTED_POSITION.labels(self.name).observe(
                (answer.expected - low) / (high - low)
            )


# -- the request's answer --------------------------------------------------------------------
def answer(
    prepared: list[Prepared],
    views: dict[View, list[ServedTask]],
    features: dict[View, torch.Tensor | None],
) -> Answers:
    """Every task's answers from its view's features, then the rows back to their images
    (and faces), in the order they were submitted."""
    streams = {
        (view, task.name): iter([] if features[view] is None else task.answer(features[view]))
        for view, tasks in views.items()
        for task in tasks
    }
    results = []
    for image in prepared:
        if image.detections is None:
            predictions = {name: next(rows) for (_, name), rows in streams.items()}
            results.append(ImageResult(image.name, predictions))
            continue
        faces = [FaceResult(face.box, face.score) for face in image.detections.faces]
        for (_, name), rows in streams.items():
            for face in faces:
                face.predictions[name] = next(rows)
        results.append(ImageResult(image.name, faces=faces, faces_found=image.detections.found))
    models = {task.name: task.ref for tasks in views.values() for task in tasks}
    return Answers(models, results)
