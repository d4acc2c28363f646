"""What the engine answers: complete, typed results that a client-facing layer only maps."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from service.engine.faces.types import Box


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
class ImageResult:
    name: str
    predictions: dict[str, TaskPrediction] = field(default_factory=dict)  # task -> answer
    # With faces: one result per kept face, largest first (``predictions`` stays empty),
    # and how many faces were detected before the per-image limit.
    faces: list[FaceResult] | None = None
    faces_found: int = 0
