"""NumCLIP's pieces: coarse bins, their interpolation, and the FCRL loss against a hand
computation (docs/numclip.md writes the same equations)."""

from __future__ import annotations

import math

import pytest
import torch

from service.trainer.architectures import BuiltClip
from service.trainer.losses import ordinal_clip_loss
from service.trainer.numclip import (
    NumClipObjective,
    NumClipPromptLearner,
    bin_interpolation,
    coarse_bins,
    fcrl_loss,
    image_side_weights,
    text_side_weights,
)
from service.trainer.text import TextEncoder

LOGITS = [[2.0, 1.0, 0.5], [0.5, 2.0, 1.0], [1.0, 0.5, 2.0]]
LABELS = [0, 1, 2]


def log_softmax(row: list[float], index: int) -> float:
    return row[index] - math.log(sum(math.exp(v) for v in row))


def test_fcrl_equals_the_hand_computed_case() -> None:
    # image side, label 0: distances (0, 1, 2) -> (K-1)/3 * d = (0, 2/3, 4/3), positive 1;
    # label 1: (1, 0, 1) -> (1, 1, 1); label 2 mirrors label 0.
    image_weights = [[1, 2 / 3, 4 / 3], [1, 1, 1], [4 / 3, 2 / 3, 1]]
    weighted = [[LOGITS[i][k] * image_weights[i][k] for k in range(3)] for i in range(3)]
    ce = -sum(log_softmax(weighted[i], LABELS[i]) for i in range(3)) / 3
    # text side: column k over the batch; negatives scaled to mean 1 (two per column here)
    text_weights = [[1, 1, 4 / 3], [2 / 3, 1, 2 / 3], [4 / 3, 1, 1]]  # N x K
    kl = 0.0
    for k in range(3):
        column = [LOGITS[i][k] * text_weights[i][k] for i in range(3)]
        # OrdinalCLIP's target: softmax(10 * [label == k]) over the batch
        target = [math.exp(10.0 * (LABELS[i] == k)) for i in range(3)]
        target = [t / sum(target) for t in target]
        kl += sum(target[i] * (math.log(target[i]) - log_softmax(column, i)) for i in range(3))
    kl /= 3
    loss, parts = fcrl_loss(torch.tensor(LOGITS), torch.tensor(LABELS), 1.0, 0.5)
    assert parts["ce"] == pytest.approx(ce, rel=1e-5)
    assert parts["kl"] == pytest.approx(kl, rel=1e-5)
    assert float(loss) == pytest.approx(ce + 0.5 * kl, rel=1e-5)
    # and it is not OrdinalCLIP's loss: the weights change it
    plain, _ = ordinal_clip_loss(torch.tensor(LOGITS), torch.tensor(LABELS))
    assert float(plain) != pytest.approx(ce + kl, rel=1e-3)


def test_negative_weights_average_one_and_grow_with_distance() -> None:
    labels = torch.tensor([0, 3, 3, 7, 9, 1, 5, 5, 2, 8, 0, 6])
    image = image_side_weights(labels, 10)
    text = text_side_weights(labels, 10)
    rows = torch.arange(len(labels))
    negatives = torch.ones_like(image, dtype=torch.bool)
    negatives[rows, labels] = False
    assert torch.allclose(image[rows, labels], torch.ones(len(labels)))
    assert torch.allclose((image * negatives).sum(1) / negatives.sum(1), torch.ones(len(labels)))
    column_means = (text * negatives).sum(0) / negatives.sum(0)
    assert torch.allclose(column_means, torch.ones(10))
    # image 0 (rank 0): weight rises with the distance to its rank
    assert torch.all(image[0, 2:] > image[0, 1:-1])


def test_coarse_bins_from_edges_or_equal_sizes() -> None:
    ages = [float(v) for v in range(101)]
    bins = coarse_bins(ages, [0, 13, 19, 35, 65], 0)
    assert [int(bins[a]) for a in (0, 12, 13, 18, 19, 34, 35, 64, 65, 100)] == [
        0, 0, 1, 1, 2, 2, 3, 3, 4, 4,
    ]  # fmt: skip
    assert coarse_bins([float(v) for v in range(10)], None, 5).tolist() == [
        0, 0, 1, 1, 2, 2, 3, 3, 4, 4,
    ]  # fmt: skip
    with pytest.raises(ValueError, match="must increase"):
        coarse_bins(ages, [0, 35, 13], 0)
    with pytest.raises(ValueError, match="needs a rank"):
        coarse_bins([0.0, 1.0, 2.0], [0, 0.5, 0.7, 1], 0)
    with pytest.raises(ValueError, match="coarse bins"):
        coarse_bins([0.0, 1.0], None, 3)


def test_fine_ranks_interpolate_between_bin_centres() -> None:
    weights = bin_interpolation(torch.tensor([0, 0, 1, 1, 2, 2]))  # centres 0.5, 2.5, 4.5
    expected = [
        [1, 0, 0],
        [0.75, 0.25, 0],
        [0.25, 0.75, 0],
        [0, 0.75, 0.25],
        [0, 0.25, 0.75],
        [0, 0, 1],
    ]
    assert torch.allclose(weights, torch.tensor(expected))


def test_the_coarse_stage_scores_the_bins_and_the_fine_stage_the_ranks(
    tiny_clip: BuiltClip,
) -> None:
    text = TextEncoder(tiny_clip.model)
    bins = coarse_bins([float(v) for v in range(10)], None, 5)
    words = ["tiny", "small", "medium", "large", "huge"]
    learner = NumClipPromptLearner(text, tiny_clip.tokenizer(), bins, words, num_context=4)
    objective = NumClipObjective(learner, coarse_epochs=2)
    objective.start_epoch(1)
    coarse, _ = learner.step_prompts()
    objective.start_epoch(2)
    fine, _ = learner.step_prompts()
    assert (len(coarse), len(fine)) == (5, 10)
    assert len(learner()[0]) == 10  # published prototypes are always the fine ranks
    # the first rank sits at or before the first bin's centre: its embedding is that bin's word
    word = text.embed(tiny_clip.tokenizer()("tiny")[0][1:2])
    assert torch.allclose(learner.rank_embeddings()[0], word)
    objective.start_epoch(0)
    labels = torch.tensor([0, 3, 9])
    logits = torch.randn(3, 5)
    _, parts = objective(logits, labels)
    reference, _ = fcrl_loss(logits, torch.tensor([0, 1, 4]))
    assert parts["loss"] == pytest.approx(float(reference)) and parts["coarse_stage"] == 1.0


def test_the_shipped_numclip_config_builds_its_bins() -> None:
    import argparse

    from service.trainer.fit_config import add_flags, load_config
    from service.trainer.methods import split_words
    from tests.server_process import ROOT

    parser = argparse.ArgumentParser()
    add_flags(parser)
    config = load_config(parser.parse_args(["--config", str(ROOT / "configs/numclip/age.yaml")]))
    assert config.prompt == "numclip" and len(config.values()) == 101
    edges = [float(e) for e in split_words(config.coarse_edges) or []]
    bins = coarse_bins(config.values(), edges, config.coarse_bins)
    assert int(bins.max()) + 1 == len(split_words(config.coarse_words) or []) == 5
