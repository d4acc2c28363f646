"""NumCLIP (Du et al., ECCV 2024): coarse number-word bins first, then the fine ranks, under a
fine-grained cross-modal ranking regulariser (FCRL). Equations and departures: docs/numclip.md.

The served artifact stays one prototype matrix over the R fine ranks: a fine rank's embedding
is interpolated between the learned embeddings of the neighbouring bins' centres, plus a
learned residual of its own (zero at the start), so the coarse stage already shapes it.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from service.trainer.losses import text_to_image_kl
from service.trainer.prompts import PromptLearner, rank_init
from service.trainer.text import TextEncoder

Stage = Literal["coarse", "fine"]


def coarse_bins(values: list[float], edges: list[float] | None, count: int) -> torch.Tensor:
    """The bin index of each of the R ranks (long, R). Bin b holds the ranks whose value is
    at least ``edges[b]`` and below ``edges[b + 1]``; without edges, ``count`` contiguous
    bins of (near) equal size."""
    ranks = len(values)
    if edges is None:
        if not 1 <= count <= ranks:
            raise ValueError(f"need 1 <= coarse bins ({count}) <= ranks ({ranks})")
        return torch.arange(ranks) * count // ranks
    if sorted(edges) != list(edges) or len(set(edges)) != len(edges):
        raise ValueError(f"coarse edges {edges} must increase")
    if edges[0] > values[0]:
        raise ValueError(f"coarse edges {edges} must start at or below {values[0]:g}")
    bins = torch.tensor([sum(value >= edge for edge in edges) - 1 for value in values])
    if len(set(bins.tolist())) != len(edges):
        raise ValueError(f"every coarse bin needs a rank: edges {edges}, values {values}")
    return bins


def bin_interpolation(bins: torch.Tensor) -> torch.Tensor:
    """R x K weights: each rank sits between the centres (mean rank index) of two bins and
    takes their embeddings linearly by its distance to each; outside the first and last
    centre, that bin's embedding alone. Every row sums to 1."""
    count = int(bins.max()) + 1
    ranks = torch.arange(len(bins), dtype=torch.float64)
    centres = torch.stack([ranks[bins == b].mean() for b in range(count)])
    weights = torch.zeros(len(bins), count, dtype=torch.float64)
    for r, position in enumerate(ranks):
        right = int(torch.searchsorted(centres, float(position)))
        if right == 0 or right == count:
            weights[r, min(right, count - 1)] = 1.0
            continue
        left = right - 1
        share = (position - centres[left]) / (centres[right] - centres[left])
        weights[r, left], weights[r, right] = 1 - share, share
    return weights.float()


def image_side_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """N x K FCRL weights of image i's logit against text k: (K - 1)|y_i - k| / sum_j |y_i - j|
    for the negatives (their mean is 1: near ranks are pushed less, far ones more), 1 for
    the positive k = y_i."""
    classes = torch.arange(num_classes, device=labels.device)
    distance = (labels[:, None] - classes[None]).abs().float()
    weights = distance * (num_classes - 1) / distance.sum(dim=1, keepdim=True).clamp(min=1)
    return torch.where(distance == 0, torch.ones_like(weights), weights)


def text_side_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """N x K FCRL weights of text k's logit against image i (a column is a distribution over
    the batch): |y_i - k| over its negatives, scaled so that their mean is 1; 1 for the
    images of rank k. Departs from the reference code, which scales by K - 1 here too."""
    classes = torch.arange(num_classes, device=labels.device)
    distance = (labels[:, None] - classes[None]).abs().float()
    negatives = (distance > 0).sum(dim=0, keepdim=True)
    weights = distance * negatives / distance.sum(dim=0, keepdim=True).clamp(min=1)
    return torch.where(distance == 0, torch.ones_like(weights), weights)


def fcrl_loss(
    logits: torch.Tensor, labels: torch.Tensor, ce_weight: float = 1.0, kl_weight: float = 1.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """OrdinalCLIP's image->text CE + text->image KL, each on logits weighted by label distance.

    ``logits``: N x K, already scaled (s * cos); ``labels``: N class indices in [0, K).
    """
    count = logits.shape[1]
    cross_entropy = F.cross_entropy(logits * image_side_weights(labels, count), labels)
    kl = text_to_image_kl(logits * text_side_weights(labels, count), labels)
    total = ce_weight * cross_entropy + kl_weight * kl
    return total, {"ce": cross_entropy.item(), "kl": kl.item(), "loss": total.item()}


class NumClipPromptLearner(PromptLearner):
    """K learned bin embeddings (from concept words) and R fine ranks interpolated from them."""

    def __init__(
        self,
        text: TextEncoder,
        tokenizer: object,
        bins: torch.Tensor,
        coarse_words: list[str] | None = None,
        rank_words: list[str] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(text, tokenizer, len(bins), **kwargs)  # type: ignore[arg-type]
        count = int(bins.max()) + 1
        if coarse_words is not None and len(coarse_words) != count:
            raise ValueError(f"{len(coarse_words)} coarse words for {count} coarse bins")
        self.register_buffer("bins", bins.long(), persistent=False)
        self.register_buffer("weights", bin_interpolation(bins), persistent=False)
        # without concept words, the rank words nearest the bins' centres (or noise)
        words = coarse_words or rank_words
        per_rank = self.tokens_per_rank
        self.coarse = nn.Parameter(rank_init(text, tokenizer, words, count, per_rank))
        self.residual = nn.Parameter(torch.zeros(len(bins), per_rank, text.width))
        self.stage: Stage = "fine"

    def rank_embeddings(self) -> torch.Tensor:
        base = self.weights @ self.coarse.flatten(1)  # R x (T*W)
        return base.reshape(self.residual.shape) + self.residual

    def step_prompts(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self(self.coarse) if self.stage == "coarse" else self()


class NumClipObjective:
    """Epochs before ``coarse_epochs`` learn the bins (labels mapped to them), later ones the
    ranks; both under :func:`fcrl_loss`. The learner's stage follows the epoch (resume too)."""

    def __init__(
        self,
        learner: NumClipPromptLearner,
        coarse_epochs: int,
        ce_weight: float = 1.0,
        kl_weight: float = 1.0,
    ) -> None:
        self.learner, self.coarse_epochs = learner, coarse_epochs
        self.ce_weight, self.kl_weight = ce_weight, kl_weight

    def start_epoch(self, epoch: int) -> None:
        self.learner.stage = "coarse" if epoch < self.coarse_epochs else "fine"

    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        coarse = self.learner.stage == "coarse"
        targets = self.learner.bins[labels] if coarse else labels
        loss, parts = fcrl_loss(logits, targets, self.ce_weight, self.kl_weight)
        return loss, {**parts, "coarse_stage": float(coarse)}
