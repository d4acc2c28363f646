"""The evaluation figure: predictions, confusion, reliability, coverage, and errors by band."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def plot_evaluation(
    probabilities: np.ndarray,
    labels: np.ndarray,
    values: np.ndarray,
    figures: dict[str, Any],
    path: Path,
    title: str,
) -> None:
    """Six panels from one :func:`service.trainer.distribution_scores.report` and its rows."""
    figure, axes = plt.subplots(2, 3, figsize=(15, 9))
    truth, expected = values[labels], probabilities @ values
    scatter, confusion_axis, diagram = axes[0]
    curve, band_mae, band_coverage = axes[1]

    scatter.scatter(truth, expected, s=8, alpha=0.5)
    scatter.plot([values[0], values[-1]], [values[0], values[-1]], "k--", linewidth=1)
    scatter.set(xlabel="true value", ylabel="predicted (expected) value")
    scatter.set_title(f"MAE {figures['mae_expected']:.3f}")

    ranks = len(values)
    confusion = np.zeros((ranks, ranks))
    np.add.at(confusion, (labels, probabilities.argmax(axis=1)), 1)
    confusion_axis.imshow(confusion, cmap="Blues", origin="lower")
    confusion_axis.set(xlabel="predicted rank", ylabel="true rank", title="confusion (arg-max)")

    bins = figures["reliability"]
    diagram.bar(
        [b["low"] for b in bins],
        [b["accuracy"] for b in bins],
        width=[b["high"] - b["low"] for b in bins],
        align="edge",
        edgecolor="k",
        alpha=0.6,
        label="accuracy",
    )
    diagram.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", label="bin")
    diagram.plot([0, 1], [0, 1], "k--", linewidth=1)
    diagram.set(xlabel="top probability", ylabel="arg-max accuracy", xlim=(0, 1), ylim=(0, 1))
    diagram.set_title(f"reliability (ECE {figures['ece']:.3f})")

    nominal = [c["level"] for c in figures["coverage_curve"]]
    curve.plot(nominal, [c["coverage"] for c in figures["coverage_curve"]], "o-", label="served")
    curve.plot([0, 1], [0, 1], "k--", linewidth=1)
    curve.axvline(figures["level"], color="grey", linewidth=0.8)
    curve.set(xlabel="promised level", ylabel="measured coverage", xlim=(0, 1), ylim=(0, 1.02))
    curve.set_title(f"coverage at {figures['level']:g}: {figures['coverage']:.3f}")

    names = [b["band"] for b in figures["by_band"]]
    positions = np.arange(len(names))
    mae = [b.get("mae_expected", np.nan) for b in figures["by_band"]]  # nan: empty band
    hit = [b.get("coverage", np.nan) for b in figures["by_band"]]
    band_mae.bar(positions, mae)
    band_mae.set(xticks=positions, xlabel="band", ylabel="MAE (expected)", title="MAE by band")
    band_mae.set_xticklabels(names, rotation=45, ha="right")
    band_coverage.bar(positions, hit)
    band_coverage.axhline(figures["level"], color="k", linestyle="--", linewidth=1)
    band_coverage.set(xticks=positions, ylim=(0, 1.02), xlabel="band", ylabel="coverage")
    band_coverage.set_title(f"coverage of the {figures['level']:g} interval by band")
    band_coverage.set_xticklabels(names, rotation=45, ha="right")

    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
