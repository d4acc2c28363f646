"""Rank interpolation weights for every number of base ranks, one included."""

from __future__ import annotations

import pytest
import torch

from service.trainer.prompts import interpolation_weights


@pytest.mark.parametrize("kind", ["linear", "inv_prop"])
@pytest.mark.parametrize("ranks", [2, 3, 5, 10, 101])
def test_every_base_count_gives_finite_normalised_weights(kind: str, ranks: int) -> None:
    for bases in range(1, min(ranks, 12) + 1):
        weights = interpolation_weights(ranks, bases, kind)  # type: ignore[arg-type]
        assert weights.shape == (ranks, bases)
        assert bool(torch.isfinite(weights).all()), (ranks, bases)
        assert bool((weights >= 0).all())
        assert torch.allclose(weights.sum(dim=1), torch.ones(ranks))


@pytest.mark.parametrize("kind", ["linear", "inv_prop"])
def test_one_base_rank_is_every_rank_with_weight_one(kind: str) -> None:
    """K = 1 as in the reference: a single base in the middle that every rank copies."""
    assert torch.equal(interpolation_weights(10, 1, kind), torch.ones(10, 1))  # type: ignore[arg-type]


def test_more_bases_than_ranks_is_refused() -> None:
    with pytest.raises(ValueError, match=r"num_base_ranks \(6\) <= num_ranks \(5\)"):
        interpolation_weights(5, 6, "linear")
