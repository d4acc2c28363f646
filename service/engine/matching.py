"""Prototype matching: image features -> rank distribution -> summary statistics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


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
