"""The training recipe's parts: augmentation, optimiser and learning-rate schedule."""

from __future__ import annotations

import math
from typing import Any

import torch
from torchvision import transforms

from service.trainer.fit_config import TrainConfig


def train_transform(size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    """The reference recipe scaled to the tower: resize 256/224·size, random crop, flip."""
    return transforms.Compose(
        [
            transforms.Resize(
                round(size * 256 / 224), interpolation=transforms.InterpolationMode.BICUBIC
            ),
            transforms.RandomCrop(size),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


def cosine_with_warmup(
    optimizer: torch.optim.Optimizer, warmup: int, total: int
) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(total - warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_optimizer(config: TrainConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    kind = torch.optim.RAdam if config.optimizer == "radam" else torch.optim.AdamW
    return kind(params, lr=config.lr, weight_decay=config.weight_decay)
