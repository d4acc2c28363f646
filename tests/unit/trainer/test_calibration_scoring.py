"""NLL, RPS, ECE, served-interval coverage and bands against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.trainer.distribution_scores import (
    bands,
    coverage,
    covered,
    ece,
    nll,
    reliability,
    report,
    rps,
)

VALUES = np.arange(5, dtype=np.float64)


def test_nll_is_the_mean_negative_log_of_the_true_rank() -> None:
    p = np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]])
    assert nll(p, np.array([0, 2])) == pytest.approx(-(math.log(0.5) + math.log(0.3)) / 2)


def test_nll_floors_a_zero_probability_instead_of_going_infinite() -> None:
    assert nll(np.array([[1.0, 0.0]]), np.array([1])) == pytest.approx(-math.log(1e-12))


def test_rps_by_hand() -> None:
    p = np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]])
    # row 1, label 0: CDF (0.5, 0.8) vs (1, 1) -> 0.25 + 0.04; row 2, label 2: (0.1, 0.7) vs 0
    expected = ((0.25 + 0.04) + (0.01 + 0.49)) / 2 / 2
    assert rps(p, np.array([0, 2])) == pytest.approx(expected)


def test_rps_charges_a_far_miss_more_than_a_near_one() -> None:
    near = rps(np.eye(5)[[1]], np.array([0]))
    far = rps(np.eye(5)[[4]], np.array([0]))
    assert rps(np.eye(5)[[0]], np.array([0])) == 0.0
    assert near == pytest.approx(1 / 4)
    assert far == pytest.approx(1.0)


def test_ece_and_its_reliability_bins_by_hand() -> None:
    p = np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.55, 0.45, 0.0]])
    labels = np.array([0, 2, 1])
    # bin [0.5, 0.6): confidences 0.5, 0.55, one right -> |0.5 - 0.525|; bin [0.6, 0.7): 0.6, wrong
    assert ece(p, labels) == pytest.approx(2 / 3 * 0.025 + 1 / 3 * 0.6)
    rows = reliability(p, labels)
    assert [(r["low"], r["count"], r["accuracy"]) for r in rows] == [(0.5, 2, 0.5), (0.6, 1, 0.0)]


def test_ece_of_a_perfectly_calibrated_set_is_zero() -> None:
    p = np.array([[0.75, 0.25]] * 4)
    assert ece(p, np.array([0, 0, 0, 1])) == pytest.approx(0.0)


def test_coverage_of_hand_made_distributions() -> None:
    peaked = np.array([0.05, 0.05, 0.8, 0.05, 0.05])
    # CDF .05 .1 .9 .95 1: tails of 0.05 put the 0.9 interval at [0, 3]
    hit, width = covered(np.tile(peaked, (5, 1)), np.arange(5), VALUES, 0.9)
    assert hit.tolist() == [True, True, True, True, False]
    assert width.tolist() == [3.0] * 5
    one_hot = np.eye(5)[[2, 2]]
    assert coverage(one_hot, np.array([2, 3]), VALUES, 0.9) == 0.5
    uniform = np.full((5, 5), 0.2)
    # tails of 0.25: CDF .2 .4 .6 .8 1 -> [1, 3]
    assert coverage(uniform, np.arange(5), VALUES, 0.5) == pytest.approx(3 / 5)


def test_bands_are_ranks_for_small_tasks_and_tenths_for_large() -> None:
    assert [b.tolist() for b in bands(VALUES)] == [[0], [1], [2], [3], [4]]
    tenths = bands(np.arange(101.0))
    assert len(tenths) == 10
    assert np.concatenate(tenths).tolist() == list(range(101))


def test_report_has_every_figure_overall_and_by_band() -> None:
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(5), size=200)
    labels = rng.integers(0, 4, size=200)  # the top rank never occurs: an empty band
    figures = report(p, labels, VALUES, 0.9, lambda level: level, ["a", "b", "c", "d", "e"])
    for key in ("mae_expected", "nll", "rps", "ece", "coverage", "interval_width", "coverage_95"):
        assert key in figures
    assert [b["band"] for b in figures["by_band"]] == ["a", "b", "c", "d", "e"]
    assert figures["by_band"][4]["count"] == 0
    counts = sum(b["count"] for b in figures["by_band"])
    assert counts == figures["count"] == 200
    curve = [c["coverage"] for c in figures["coverage_curve"]]
    assert curve == sorted(curve)  # a wider interval never covers less
