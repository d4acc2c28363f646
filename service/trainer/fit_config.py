"""Training configuration: a YAML file, every field overridable by a ``--flag``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # data
    train: Path = Field(description="training list (path label), CSV or folder-per-rank")
    val: Path = Field(description="validation list, CSV or folder")
    images_root: Path = Field(Path("."), description="folder the list paths are relative to")
    task: str = Field(description="task name to publish, e.g. age")
    ranks: str = Field(description="rank values: '0:100' or '1930,1940,...'")
    labels: str | None = Field(None, description="comma-separated display labels, one per rank")
    unit: str | None = None
    shots: int = Field(0, ge=0, description="few-shot: samples per rank (0 = all)")
    strict_data: bool = Field(False, description="any bad row is fatal (else skipped, counted)")
    crop: Literal["none", "faces"] = Field(
        "none", description="'faces': train on each image's largest face crop (the server's)"
    )
    crop_margin: float = Field(0.5, ge=0, description="face crop side = (1 + margin) x box side")
    # model
    backbone: str = Field("ViT-B-16", description="open_clip architecture or 'tiny'")
    pretrained: str | None = Field(None, description="open_clip pretrained tag or checkpoint")
    prompt: Literal["rank", "plain", "numclip"] = Field(
        "rank", description="rank: OrdinalCLIP, plain: CoOp, numclip: NumCLIP (docs/numclip.md)"
    )
    num_context: int = Field(10, gt=0)
    context_init: str | None = Field(None, description="e.g. 'the age of the person is'")
    num_base_ranks: int = Field(3, gt=0)
    interpolation: Literal["linear", "inv_prop"] = "linear"
    tokens_per_rank: int = Field(1, gt=0)
    rank_position: Literal["tail", "front", "middle"] = "tail"
    rank_words: str | None = Field(None, description="comma-separated words to initialise ranks")
    coarse_bins: int = Field(5, gt=0, description="NumCLIP: coarse bins (without --coarse-edges)")
    coarse_edges: str | None = Field(
        None, description="NumCLIP: rank values where the bins start, e.g. '0,13,19,35,65'"
    )
    coarse_words: str | None = Field(None, description="NumCLIP: one concept word per bin")
    coarse_epochs: int | None = Field(
        None, ge=0, description="NumCLIP: epochs on the bins before the ranks (default: half)"
    )
    image_encoder: Literal["frozen", "finetune"] = "frozen"
    finetune_last: int = Field(0, ge=0, description="fine-tune only the last N blocks (0 = all)")
    # optimisation
    epochs: int = Field(100, gt=0)
    batch_size: int = Field(32, gt=0, description="global batch (split across DDP processes)")
    optimizer: Literal["radam", "adamw"] = "radam"
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    warmup_epochs: float = Field(0.0, ge=0)
    grad_clip: float = Field(0.0, ge=0, description="max gradient norm (0 = off)")
    ce_weight: float = 1.0
    kl_weight: float = 1.0
    workers: int = Field(0, ge=0, description="data-loader processes")
    seed: int = 0
    device: str = "auto"
    # output
    output: Path = Field(Path("runs/latest"), description="checkpoints, logs, plots")
    model_store: Path | None = Field(None, description="publish the best epoch here when done")
    resume: bool = Field(False, description="continue from output/checkpoint.pt")

    def values(self) -> list[float]:
        from service.trainer.tasks import parse_values

        return parse_values(self.ranks)

    def label_list(self) -> list[str] | None:
        return self.labels.split(",") if self.labels else None


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML file; flags override it")
    for name, field in TrainConfig.model_fields.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            help=(field.description or "").replace("%", "%%"),
        )


def load_config(args: argparse.Namespace) -> TrainConfig:
    values: dict[str, Any] = {}
    if args.config:
        values.update(yaml.safe_load(args.config.read_text()) or {})
    for name in TrainConfig.model_fields:
        flag = getattr(args, name, None)
        if flag is not None:
            values[name] = flag
    return TrainConfig.model_validate(values)
