"""Evaluating *published* artifacts through the server's own engine code: figures, JSON, plot.

Images are decoded, preprocessed and encoded as the server does, and probabilities and
intervals come from the engine's matching code with the manifest's *served* logit scale and
interval mass, so a calibrated version is measured exactly as it will answer.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.engine import EngineConfig, load_task_backbone, rank_probabilities
from service.registry import LoadedTask, ModelStore
from service.trainer.data import read_samples
from service.trainer.distribution_scores import report
from service.trainer.face_crops import Crop, crop_samples
from service.trainer.ordinal_metrics import ordinality


@dataclass(frozen=True)
class Encoded:
    """A labelled list as the engine sees it: the task version, image features, true ranks."""

    task: LoadedTask
    features: torch.Tensor
    labels: np.ndarray
    list_path: Path


def encode_list(
    store: ModelStore,
    task: str,
    samples_file: Path,
    images_root: Path,
    precision: str = "fp32",
    version: str | None = None,
    batch_size: int = 32,
    crop: Crop = "none",
    crop_margin: float = 0.5,
) -> Encoded:
    """Decode, preprocess and encode every listed image with the task's backbone, built
    by the server's factory (with ``crop="faces"``: each image's largest face, as in fit)."""
    backbone, runtime = load_task_backbone(
        store.root, task, EngineConfig.offline(precision), version
    )
    loaded = LoadedTask(runtime.manifest, runtime.prototypes)
    samples = read_samples(samples_file, images_root, loaded.manifest.num_ranks, strict=True)
    features = []
    with tempfile.TemporaryDirectory() as crops:
        size = backbone.preprocess.image_size
        (samples,) = crop_samples(crop, crop_margin, size, Path(crops), test=samples)
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            pixels = torch.stack(
                [backbone.preprocess(s.path.read_bytes(), s.path.name) for s in chunk]
            )
            features.append(backbone.tower.encode(pixels).float())
    labels = np.array([s.rank for s in samples])
    return Encoded(loaded, torch.cat(features), labels, samples_file)


def served_probabilities(
    features: torch.Tensor, prototypes: torch.Tensor, logit_scale: float
) -> np.ndarray:
    """The engine's rank distributions (float32 softmax), as float64 rows."""
    return rank_probabilities(features, prototypes, logit_scale).double().numpy()


def evaluate_published(
    store_root: Path,
    task: str,
    samples_file: Path,
    images_root: Path,
    precision: str = "fp32",
    version: str | None = None,
    plot_path: Path | None = None,
    batch_size: int = 32,
    level: float = 0.9,
    json_path: Path | None = None,
    crop: Crop = "none",
    crop_margin: float = 0.5,
) -> dict[str, Any]:
    """Overall figures at the top level, plus ``by_band``, ``reliability``, ``coverage_curve``."""
    encoded = encode_list(
        ModelStore(store_root),
        task,
        samples_file,
        images_root,
        precision,
        version,
        batch_size,
        crop,
        crop_margin,
    )
    manifest = encoded.task.manifest
    probabilities = served_probabilities(
        encoded.features, encoded.task.prototypes, manifest.serving_logit_scale()
    )
    values = np.asarray(manifest.values, dtype=np.float64)
    figures = report(
        probabilities, encoded.labels, values, level, manifest.interval_mass, manifest.labels
    )
    figures["ordinality"] = ordinality(encoded.task.prototypes)
    figures["task"], figures["version"] = manifest.task, manifest.version
    figures["calibrated"] = manifest.calibration is not None
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(figures, indent=2) + "\n")
    if plot_path is not None:
        from service.trainer.plots import plot_evaluation

        state = "calibrated" if figures["calibrated"] else "uncalibrated"
        title = f"{task} {manifest.version} ({state})"
        plot_evaluation(probabilities, encoded.labels, values, figures, plot_path, title)
    return figures
