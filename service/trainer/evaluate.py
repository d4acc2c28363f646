"""Evaluating *published* artifacts through the server's own engine code, with a plot."""

from __future__ import annotations

import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from service.engine.config import EngineConfig
from service.engine.factory import load_task_backbone
from service.trainer.crop import Crop, crop_samples
from service.trainer.data import read_samples
from service.trainer.metrics import ordinal_metrics, ordinality


def evaluate_published(
    store_root: Path,
    task: str,
    samples_file: Path,
    images_root: Path,
    precision: str = "fp32",
    version: str | None = None,
    plot_path: Path | None = None,
    batch_size: int = 32,
    crop: Crop = "none",
    crop_margin: float = 0.5,
) -> dict[str, float]:
    """Decode, preprocess, encode and match exactly as the server does; return the figures."""
    backbone, runtime = load_task_backbone(
        store_root, task, EngineConfig.offline(precision), version
    )
    samples = read_samples(samples_file, images_root, runtime.manifest.num_ranks, strict=True)
    with tempfile.TemporaryDirectory() as crops:
        size = backbone.preprocess.image_size
        (samples,) = crop_samples(crop, crop_margin, size, Path(crops), test=samples)
        rows = []
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            pixels = torch.stack(
                [backbone.preprocess(s.path.read_bytes(), s.path.name) for s in chunk]
            )
            encoded = backbone.tower.encode(pixels)
            rows += [answer.probabilities for answer in runtime.answer(encoded)]
    probabilities = np.stack(rows)
    labels = np.array([s.rank for s in samples])
    metrics = ordinal_metrics(probabilities, labels, runtime.values)
    metrics["ordinality"] = ordinality(runtime.prototypes)
    if plot_path is not None:
        plot_predictions(
            probabilities, labels, runtime.values, plot_path, f"{task} {runtime.manifest.version}"
        )
    return metrics


def plot_predictions(
    probabilities: np.ndarray, labels: np.ndarray, values: np.ndarray, path: Path, title: str
) -> None:
    """Predicted (expected) vs true value, and the arg-max confusion matrix."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5))
    truth, expected = values[labels], probabilities @ values
    left.scatter(truth, expected, s=8, alpha=0.5)
    left.plot([values[0], values[-1]], [values[0], values[-1]], "k--", linewidth=1)
    left.set_xlabel("true value")
    left.set_ylabel("predicted (expected) value")
    left.set_title(f"MAE {np.abs(expected - truth).mean():.3f}")
    ranks = len(values)
    confusion = np.zeros((ranks, ranks))
    np.add.at(confusion, (labels, probabilities.argmax(axis=1)), 1)
    right.imshow(confusion, cmap="Blues", origin="lower")
    right.set_xlabel("predicted rank")
    right.set_ylabel("true rank")
    right.set_title("confusion (arg-max)")
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
