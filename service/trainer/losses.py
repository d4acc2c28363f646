"""OrdinalCLIP's objective: image→text cross-entropy + text→image KL divergence."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def text_to_image_targets(labels: torch.Tensor, num_ranks: int, sharpness: float = 10.0):
    """N x R targets over the batch per rank column, and the mask of ranks present.

    For rank r present in the batch, column r is softmax(sharpness · [label == r]) over the
    batch: mass spread evenly over the images of that rank (the reference implementation).
    """
    one_hot = F.one_hot(labels, num_ranks).float()  # N x R
    present = one_hot.sum(dim=0) > 0
    targets = torch.softmax(sharpness * one_hot, dim=0) * present
    return targets, present


def ordinal_clip_loss(
    logits: torch.Tensor, labels: torch.Tensor, ce_weight: float = 1.0, kl_weight: float = 1.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """``logits``: N x R image→rank logits (already scaled). Returns the loss and its parts."""
    cross_entropy = F.cross_entropy(logits, labels)
    kl = text_to_image_kl(logits, labels)
    total = ce_weight * cross_entropy + kl_weight * kl
    parts = {"ce": cross_entropy.item(), "kl": kl.item(), "loss": total.item()}
    return total, parts


def text_to_image_kl(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over the ranks present of KL(target column || softmax of the logit column over
    the batch): the text->image half of OrdinalCLIP's objective (NumCLIP weights the logits)."""
    targets, present = text_to_image_targets(labels, logits.shape[1])
    log_probs = F.log_softmax(logits, dim=0)  # per rank, a distribution over the batch
    safe_targets = torch.where(targets > 0, targets, torch.ones_like(targets))
    kl = (targets * (safe_targets.log() - log_probs)).sum(dim=0)
    return (kl * present).sum() / present.sum().clamp(min=1)
