"""The post stage: features -> rank distributions -> complete per-task answers, plus the
drift metrics. It runs off the event loop (numpy work per image)."""

from __future__ import annotations

import numpy as np
import torch

from service import metrics
from service.engine.matching import rank_probabilities, summarize
from service.engine.results import Interval, ModelRef, TaskPrediction
from service.registry import LoadedTask
from service.registry.manifest import TaskManifest


class TaskRuntime:
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
