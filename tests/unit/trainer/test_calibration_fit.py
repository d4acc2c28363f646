"""Temperature by NLL and the split-conformal interval mass, on data from known softmaxes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import softmax

from service.trainer.calibration import (
    conformal_mass,
    conformal_scores,
    conformal_target,
    fit_temperature,
)
from service.trainer.distribution_scores import coverage, covered

RANKS = 10
VALUES = np.arange(RANKS, dtype=np.float64)
BASE_SCALE = 100.0


def draw(rng: np.random.Generator, n: int, true_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Cosines and ranks drawn from softmax(true_scale * cos): the truth is known.

    The cosines' spread keeps the true logits' at 3, where ranks are neither certain (the
    scale would be unidentifiable) nor uniform.
    """
    cos = rng.normal(0.0, 3.0 / true_scale, size=(n, RANKS))
    probabilities = softmax(true_scale * cos, axis=1)
    labels = np.array([rng.choice(RANKS, p=row) for row in probabilities])
    return cos, labels


@pytest.mark.parametrize(("true_scale", "seed"), [(30.0, 1), (300.0, 2)])
def test_temperature_recovers_the_generating_scale(true_scale: float, seed: int) -> None:
    cos, labels = draw(np.random.default_rng(seed), 4000, true_scale)
    temperature = fit_temperature(cos, labels, BASE_SCALE)
    assert temperature == pytest.approx(BASE_SCALE / true_scale, rel=0.05)


def test_conformal_target_is_the_finite_sample_quantile() -> None:
    assert conformal_target(500, 0.9) == 451 / 500
    assert conformal_target(99, 0.9) == 90 / 99
    assert conformal_target(5, 0.9) == 1.0  # too few images to promise less than all


def test_scores_are_where_the_served_interval_starts_to_hold_the_truth() -> None:
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.full(RANKS, 0.5), size=300)
    labels = rng.integers(0, RANKS, size=300)
    scores = conformal_scores(p, labels)
    inside = scores < 1.0 - 1e-5
    above, _ = covered(p[inside], labels[inside], VALUES, 1.0)
    assert above.all()
    for delta, expected in ((1e-6, True), (-1e-6, False)):
        rows = inside & (scores + delta > 0)
        masses = scores[rows] + delta
        hits = [
            covered(p[[i]], labels[[i]], VALUES, float(m))[0][0]
            for i, m in zip(np.flatnonzero(rows), masses, strict=True)
        ]
        assert all(h == expected for h in hits)


def test_conformal_mass_reaches_the_finite_sample_coverage_and_no_less_would() -> None:
    rng = np.random.default_rng(4)
    cos, labels = draw(rng, 500, 20.0)
    overconfident = softmax(3.0 * 20.0 * cos, axis=1)
    assert coverage(overconfident, labels, VALUES, 0.9) < 0.85
    mass = conformal_mass(overconfident, labels, VALUES, 0.9)
    target = conformal_target(500, 0.9)
    assert coverage(overconfident, labels, VALUES, mass) >= target
    assert coverage(overconfident, labels, VALUES, mass - 2e-6) < target
    fresh_cos, fresh_labels = draw(rng, 5000, 20.0)
    fresh = coverage(softmax(60.0 * fresh_cos, axis=1), fresh_labels, VALUES, mass)
    assert 0.88 <= fresh <= 0.93


def test_too_few_images_give_the_whole_distribution() -> None:
    p = softmax(np.random.default_rng(5).normal(size=(5, RANKS)), axis=1)
    labels = np.arange(5)
    mass = conformal_mass(p, labels, VALUES, 0.9)
    assert coverage(p, labels, VALUES, mass) == 1.0
    assert math.isclose(mass, min(conformal_scores(p, labels).max() + 1e-6, 1.0))
