"""Prototype matching and the summary statistics, on hand-made distributions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from service.engine.post import rank_probabilities, summarize

VALUES = np.array([10.0, 20.0, 30.0, 40.0, 50.0])


def test_point_mass() -> None:
    summary = summarize(np.array([0, 0, 1.0, 0, 0]), VALUES)
    assert (summary.expected, summary.mode, summary.median) == (30.0, 30.0, 30.0)
    assert (summary.interval_low, summary.interval_high) == (30.0, 30.0)


def test_uniform() -> None:
    summary = summarize(np.full(5, 0.2), VALUES, level=0.9)
    assert summary.expected == pytest.approx(30.0)
    assert summary.median == 30.0  # cdf 0.2, 0.4, 0.6 -> first >= 0.5
    assert summary.interval_low == 10.0  # first cdf >= 0.05
    assert summary.interval_high == 50.0  # first cdf >= 0.95


def test_skewed_distribution() -> None:
    probabilities = np.array([0.5, 0.3, 0.1, 0.06, 0.04])
    summary = summarize(probabilities, VALUES, level=0.8)
    assert summary.expected == pytest.approx(0.5 * 10 + 0.3 * 20 + 0.1 * 30 + 0.06 * 40 + 0.04 * 50)
    assert summary.mode == 10.0
    assert summary.median == 10.0  # cdf reaches 0.5 exactly at the first rank
    assert summary.interval_low == 10.0  # 10% tail
    assert summary.interval_high == 30.0  # cdf 0.5, 0.8, 0.9 -> first >= 0.9


def test_bimodal_mode_and_median_differ_from_mean() -> None:
    probabilities = np.array([0.45, 0.0, 0.0, 0.0, 0.55])
    summary = summarize(probabilities, VALUES)
    assert summary.mode == 50.0
    assert summary.median == 50.0
    assert summary.expected == pytest.approx(0.45 * 10 + 0.55 * 50)


def test_unnormalised_input_is_normalised() -> None:
    summary = summarize(np.array([2.0, 2.0, 0, 0, 0]), VALUES)
    assert summary.probabilities.sum() == pytest.approx(1.0)
    assert summary.expected == pytest.approx(15.0)


def test_rank_probabilities_are_a_softmax_of_scaled_cosines() -> None:
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(3, 8, generator=generator) * 7  # unnormalised on purpose
    prototypes = torch.nn.functional.normalize(torch.randn(5, 8, generator=generator), dim=-1)
    probabilities = rank_probabilities(features, prototypes, logit_scale=50.0)
    cosines = torch.nn.functional.cosine_similarity(features[:, None], prototypes[None], dim=-1)
    assert torch.allclose(probabilities, torch.softmax(50.0 * cosines, dim=-1), atol=1e-6)
    assert torch.allclose(probabilities.sum(-1), torch.ones(3))
