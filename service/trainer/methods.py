"""The prompt-learning methods ``fit`` knows, by ``TrainConfig.prompt``: their prompt learner,
their objective, and the name a published manifest gives them.

rank     OrdinalCLIP: interpolated rank prompts, image->text CE + text->image KL
plain    CoOp: one free embedding per rank, the same objective
numclip  NumCLIP: coarse concept bins first, then the fine ranks, under FCRL (docs/numclip.md)
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from service.trainer.fit_config import TrainConfig
from service.trainer.losses import ordinal_clip_loss
from service.trainer.numclip import NumClipObjective, NumClipPromptLearner, coarse_bins
from service.trainer.prompts import PlainPromptLearner, RankPromptLearner
from service.trainer.text import TextEncoder

METHOD_NAMES = {
    "rank": "OrdinalCLIP rank prompts",
    "plain": "CoOp prompts",
    "numclip": "NumCLIP coarse-to-fine prompts",
}


class Objective(Protocol):
    def start_epoch(self, epoch: int) -> None: ...

    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]: ...


class OrdinalClipObjective:
    """OrdinalCLIP's loss, the same in every epoch (CoOp is trained with it too)."""

    def __init__(self, ce_weight: float, kl_weight: float) -> None:
        self.ce_weight, self.kl_weight = ce_weight, kl_weight

    def start_epoch(self, epoch: int) -> None:
        pass

    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        return ordinal_clip_loss(logits, labels, self.ce_weight, self.kl_weight)


def split_words(words: str | None) -> list[str] | None:
    return words.split(",") if words else None


def build_prompts(
    config: TrainConfig, text: TextEncoder, tokenizer: object, num_ranks: int
) -> nn.Module:
    common: dict[str, object] = {
        "num_context": config.num_context,
        "tokens_per_rank": config.tokens_per_rank,
        "position": config.rank_position,
        "context_init": config.context_init,
        "rank_words": split_words(config.rank_words),
    }
    if config.prompt == "rank":
        return RankPromptLearner(
            text,
            tokenizer,
            num_ranks,
            num_base_ranks=config.num_base_ranks,
            interpolation=config.interpolation,
            **common,  # type: ignore[arg-type]
        )
    if config.prompt == "numclip":
        edges = split_words(config.coarse_edges)
        bins = coarse_bins(
            config.values(), [float(e) for e in edges] if edges else None, config.coarse_bins
        )
        return NumClipPromptLearner(
            text, tokenizer, bins, coarse_words=split_words(config.coarse_words), **common
        )
    return PlainPromptLearner(text, tokenizer, num_ranks, **common)  # type: ignore[arg-type]


def objective_for(config: TrainConfig, prompts: nn.Module) -> Objective:
    if isinstance(prompts, NumClipPromptLearner):
        coarse = config.epochs // 2 if config.coarse_epochs is None else config.coarse_epochs
        return NumClipObjective(prompts, coarse, config.ce_weight, config.kl_weight)
    return OrdinalClipObjective(config.ce_weight, config.kl_weight)
