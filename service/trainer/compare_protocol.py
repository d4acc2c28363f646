"""What ``compare`` holds equal for every method, and its command-line flags (kept apart
from the training stack so that the CLI starts without importing it)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Protocol:
    """Everything that is the same for every method; written into the results."""

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    ranks: int = 10
    per_rank: dict[str, int] = field(
        default_factory=lambda: {"train": 32, "val": 10, "calibration": 30, "test": 30}
    )
    image_size: int = 32
    backbone: str = "tiny"
    epochs: int = 20
    batch_size: int = 32
    lr: float = 3e-3
    num_context: int = 4
    coarse_bins: int = 5
    level: float = 0.9


def add_compare_flags(parser: argparse.ArgumentParser) -> None:
    defaults = Protocol()
    parser.add_argument("--out", type=Path, required=True, help="compare.{json,md,png} go here")
    parser.add_argument("--work", type=Path, help="keep data, runs and stores here (default: temp)")
    parser.add_argument("--seeds", default=",".join(map(str, defaults.seeds)))
    parser.add_argument("--ranks", type=int, default=defaults.ranks)
    parser.add_argument("--train-per-rank", type=int, default=defaults.per_rank["train"])
    parser.add_argument("--test-per-rank", type=int, default=defaults.per_rank["test"])
    parser.add_argument("--backbone", default=defaults.backbone, help="'tiny' or e.g. ViT-B-16")
    parser.add_argument("--image-size", type=int, default=defaults.image_size)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--level", type=float, default=defaults.level, help="interval level")


def protocol_from(args: argparse.Namespace) -> Protocol:
    defaults = Protocol()
    per_rank = {**defaults.per_rank, "train": args.train_per_rank, "test": args.test_per_rank}
    return Protocol(
        seeds=[int(s) for s in args.seeds.split(",")],
        ranks=args.ranks,
        per_rank=per_rank,
        image_size=args.image_size,
        backbone=args.backbone,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        level=args.level,
    )
