"""How good and how honest a task's distributions are: NLL, RPS, ECE, interval coverage, by band.

Every function takes ``probabilities`` (N x R, rows sum to 1), ``labels`` (N rank indices) and,
where values matter, ``values`` (R rank values). Intervals are computed by the engine's own
:func:`service.engine.post.summarize`, so a coverage figure here is the served interval's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from service.engine import summarize
from service.trainer.ordinal_metrics import ordinal_metrics

# A float32 softmax can round a far-off rank's probability to 0; -log(0) would make one
# image dominate the mean, so probabilities are floored here (documented in docs/trust.md).
PROBABILITY_FLOOR = 1e-12
ECE_BINS = 10
COVERAGE_LEVELS = (0.5, 0.8, 0.95)
MAX_BANDS = 10


def nll(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true rank (nats)."""
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.log(np.maximum(picked, PROBABILITY_FLOOR)).mean())


def rps(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Ranked probability score, the discrete CRPS, normalised to [0, 1] by R - 1 thresholds.

    Per image: sum over thresholds r < R-1 of (P(rank <= r) - [label <= r])^2, / (R - 1).
    A confident answer one rank off costs less than one five ranks off, unlike NLL.
    """
    ranks = probabilities.shape[1]
    cdf = np.cumsum(probabilities, axis=1)[:, :-1]
    truth = (np.arange(ranks - 1)[None, :] >= labels[:, None]).astype(np.float64)
    return float(((cdf - truth) ** 2).sum(axis=1).mean() / (ranks - 1))


def reliability(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> list[dict[str, float]]:
    """Top-probability bins (equal width on [0, 1]): mean confidence, accuracy, count."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        chosen = index == b
        if chosen.any():
            rows.append(
                {
                    "low": b / bins,
                    "high": (b + 1) / bins,
                    "confidence": float(confidence[chosen].mean()),
                    "accuracy": float(correct[chosen].mean()),
                    "count": int(chosen.sum()),
                }
            )
    return rows


def ece(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top probability: sum_b n_b/N |accuracy_b - conf_b|."""
    rows = reliability(probabilities, labels, bins)
    return float(sum(r["count"] * abs(r["accuracy"] - r["confidence"]) for r in rows)) / len(labels)


def intervals(
    probabilities: np.ndarray, values: np.ndarray, mass: float
) -> tuple[np.ndarray, np.ndarray]:
    """The served central-``mass`` interval of every row: (low values, high values)."""
    summaries = [summarize(row, values, mass) for row in probabilities]
    low = np.array([s.interval_low for s in summaries])
    high = np.array([s.interval_high for s in summaries])
    return low, high


def covered(
    probabilities: np.ndarray, labels: np.ndarray, values: np.ndarray, mass: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per row: does the central-``mass`` interval hold the true value, and its width."""
    low, high = intervals(probabilities, values, mass)
    truth = values[labels]
    return (low <= truth) & (truth <= high), high - low


def coverage(
    probabilities: np.ndarray, labels: np.ndarray, values: np.ndarray, mass: float
) -> float:
    """Share of rows whose central-``mass`` interval holds the true value."""
    return float(covered(probabilities, labels, values, mass)[0].mean())


def bands(values: np.ndarray) -> list[np.ndarray]:
    """Rank indices per band: one band per rank for R <= 10, else ten contiguous tenths."""
    ranks = np.arange(len(values))
    if len(values) <= MAX_BANDS:
        return [ranks[i : i + 1] for i in ranks]
    return list(np.array_split(ranks, MAX_BANDS))


def band_name(values: np.ndarray, members: np.ndarray, labels: list[str] | None) -> str:
    if len(members) == 1:
        return labels[members[0]] if labels else f"{values[members[0]]:g}"
    return f"{values[members[0]]:g}-{values[members[-1]]:g}"


def scores(
    probabilities: np.ndarray,
    labels: np.ndarray,
    values: np.ndarray,
    level: float,
    mass_for: Callable[[float], float],
) -> dict[str, Any]:
    """Point and distribution figures of one set of rows; intervals use ``mass_for(level)``."""
    hit, width = covered(probabilities, labels, values, mass_for(level))
    figures: dict[str, Any] = ordinal_metrics(probabilities, labels, values)
    figures.update(
        nll=nll(probabilities, labels),
        rps=rps(probabilities, labels),
        ece=ece(probabilities, labels),
        coverage=float(hit.mean()),
        interval_width=float(width.mean()),
    )
    for other in COVERAGE_LEVELS:
        figures[f"coverage_{round(other * 100)}"] = coverage(
            probabilities, labels, values, mass_for(other)
        )
    return figures


def report(
    probabilities: np.ndarray,
    labels: np.ndarray,
    values: np.ndarray,
    level: float,
    mass_for: Callable[[float], float],
    names: list[str] | None = None,
) -> dict[str, Any]:
    """Overall figures (top level), ``level``, ``by_band``, ``reliability`` and the
    coverage curve against nominal levels 0.05..0.95 (as served: ``mass_for``)."""
    result = scores(probabilities, labels, values, level, mass_for)
    result["level"] = level
    result["by_band"] = []
    for members in bands(values):
        rows = np.isin(labels, members)
        band: dict[str, Any] = {
            "band": band_name(values, members, names),
            "low": float(values[members[0]]),
            "high": float(values[members[-1]]),
        }
        if rows.any():
            band.update(scores(probabilities[rows], labels[rows], values, level, mass_for))
        else:
            band["count"] = 0
        result["by_band"].append(band)
    result["reliability"] = reliability(probabilities, labels)
    nominal = np.round(np.arange(0.05, 0.951, 0.05), 2)
    result["coverage_curve"] = [
        {"level": float(n), "coverage": coverage(probabilities, labels, values, mass_for(n))}
        for n in nominal
    ]
    return result
