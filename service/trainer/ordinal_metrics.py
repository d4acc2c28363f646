"""Ordinal-regression figures: MAE and accuracy (expected and arg-max), off-by-one, ordinality."""

from __future__ import annotations

import numpy as np
import torch


def ordinal_metrics(
    probabilities: np.ndarray, labels: np.ndarray, values: np.ndarray
) -> dict[str, float]:
    """``probabilities``: N x R; ``labels``: N rank indices; ``values``: R rank values."""
    expected = probabilities @ values
    argmax = probabilities.argmax(axis=1)
    truth = values[labels]
    nearest_to_expected = np.abs(expected[:, None] - values[None]).argmin(axis=1)
    return {
        "mae_expected": float(np.abs(expected - truth).mean()),
        "mae_argmax": float(np.abs(values[argmax] - truth).mean()),
        "accuracy_expected": float((nearest_to_expected == labels).mean()),
        "accuracy_argmax": float((argmax == labels).mean()),
        "off_by_one_accuracy": float((np.abs(argmax - labels) <= 1).mean()),
        "mae_predict_mean": float(np.abs(truth.mean() - truth).mean()),
        "count": len(labels),
    }


def ordinality(prototypes: torch.Tensor) -> float:
    """Share of neighbouring comparisons in which prototype similarity falls with rank distance.

    For every anchor rank i and every j on either side of it, sim(i, j) should exceed
    sim(i, j') where j' is one rank further from i. 1.0 = perfectly ordered prototypes.
    """
    normalised = torch.nn.functional.normalize(prototypes.float(), dim=-1)
    similarity = (normalised @ normalised.T).numpy()
    ranks = len(similarity)
    ordered = total = 0
    for anchor in range(ranks):
        row = similarity[anchor]
        right = row[anchor:]
        left = row[: anchor + 1][::-1]
        for side in (right, left):
            if len(side) > 1:
                ordered += int((side[:-1] > side[1:]).sum())
                total += len(side) - 1
    return ordered / total if total else 1.0
