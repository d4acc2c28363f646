"""The training loop: optimiser, schedule, AMP, clipping, checkpoints, resume, best-on-val."""

from __future__ import annotations

import functools
import json
import logging
import math
import random
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from open_clip.transform import image_transform
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from service.engine import rank_logits
from service.registry.files import atomic_file
from service.trainer.architectures import BuiltClip, build_clip
from service.trainer.data import ImageDataset, RankScale, few_shot, read_samples
from service.trainer.distributed import (
    DistContext,
    barrier,
    gather,
    init_distributed,
    shutdown,
)
from service.trainer.face_crops import crop_samples
from service.trainer.fit_config import TrainConfig
from service.trainer.methods import objective_for
from service.trainer.model import OrdinalClip
from service.trainer.recipe import cosine_with_warmup, make_optimizer, train_transform
from service.trainer.validation import encode_all, validate

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
LOG = "metrics.jsonl"


@dataclass
class FitResult:
    built: BuiltClip
    model: OrdinalClip
    scale: RankScale
    best_epoch: int
    best_metrics: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto``: the first GPU if any (``fit`` moves each torchrun process to its own)."""
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def trainable_state(model: OrdinalClip) -> dict[str, torch.Tensor]:
    """Only what training changes: prompt parameters, and the visual tower when fine-tuned."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    keep = {n.split(".")[0] + "." for n in names}
    return {
        k: v.detach().cpu().clone()
        for k, v in model.state_dict().items()
        if any(k.startswith(p) for p in keep)
    }


def fit(config: TrainConfig) -> FitResult:
    """Train per ``config``; every process of a torchrun job calls this."""
    device = resolve_device(config.device)
    context = init_distributed(device)
    if context.enabled and device.type == "cuda":
        device = torch.device(f"cuda:{context.local_rank}")
    seed_everything(config.seed)
    try:
        return Trainer(config, context, device).run()
    finally:
        shutdown(context)


@dataclass
class Progress:
    epoch: int = 0  # epochs done
    best_mae: float = math.inf
    best_epoch: int = -1
    best_metrics: dict[str, float] = field(default_factory=dict)


class Trainer:
    """One training run: data and model set up in ``__init__``, epochs in :meth:`run`."""

    def __init__(self, config: TrainConfig, context: DistContext, device: torch.device) -> None:
        self.config, self.context, self.device = config, context, device
        self.scale = RankScale(config.values(), config.label_list())
        self.values = np.asarray(self.scale.values, dtype=np.float64)
        self.built = build_clip(config.backbone, config.pretrained, seed=config.seed)
        self.model = OrdinalClip(self.built, config, self.scale.num_ranks).to(device)
        self.cached = config.image_encoder == "frozen"
        train_set, val_set = self._datasets()
        if config.batch_size % context.world_size:
            raise ValueError(
                f"batch size {config.batch_size} is not divisible by {context.world_size} processes"
            )
        self.sampler: DistributedSampler[Any] = DistributedSampler(
            train_set, context.world_size, context.rank, shuffle=True, seed=config.seed
        )
        self.train_loader = DataLoader(
            train_set,
            batch_size=config.batch_size // context.world_size,
            sampler=self.sampler,
            drop_last=True,
            num_workers=config.workers,
        )
        if len(self.train_loader) == 0:
            raise ValueError(
                f"{len(train_set)} training samples make no full batch of {config.batch_size}"
            )
        self.val_loader = DataLoader(val_set, batch_size=64, num_workers=config.workers)
        self.wrapped: torch.nn.Module = (
            # NumCLIP's coarse stage leaves the fine ranks' residuals out of the graph
            DistributedDataParallel(self.model, find_unused_parameters=config.prompt == "numclip")
            if context.enabled
            else self.model
        )
        self.optimizer = make_optimizer(config, self.model.trainable_parameters())
        steps_per_epoch = len(self.train_loader)
        self.scheduler = cosine_with_warmup(
            self.optimizer,
            round(config.warmup_epochs * steps_per_epoch),
            config.epochs * steps_per_epoch,
        )
        self.objective = objective_for(config, self.model.prompts)
        self.amp = device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

    def _datasets(self) -> tuple[Any, Any]:
        config, cfg = self.config, self.built.preprocess
        size = cfg.size if isinstance(cfg.size, int) else int(cfg.size[0])
        eval_tf = image_transform(size, is_train=False, mean=cfg.mean, std=cfg.std)
        ranks = self.scale.num_ranks
        train = read_samples(config.train, config.images_root, ranks, config.strict_data)
        if config.shots:
            train = few_shot(train, config.shots, config.seed)
        val = read_samples(config.val, config.images_root, ranks, config.strict_data)
        margin, crops = config.crop_margin, config.output / "face-crops"
        train, val = crop_samples(config.crop, margin, size, crops, train=train, val=val)
        if not self.cached:
            return ImageDataset(train, train_transform(size, cfg.mean, cfg.std)), ImageDataset(
                val, eval_tf
            )
        # A frozen encoder sees each image once; epochs then cost only the text side.
        self.model.eval()
        return (
            encode_all(self.model, ImageDataset(train, eval_tf), self.device),
            encode_all(self.model, ImageDataset(val, eval_tf), self.device),
        )

    def run(self) -> FitResult:
        output = self.config.output
        output.mkdir(parents=True, exist_ok=True)
        (output / "config.json").write_text(self.config.model_dump_json(indent=2) + "\n")
        progress = self._resume()
        history = []
        for epoch in range(progress.epoch, self.config.epochs):
            totals = self.train_epoch(epoch)
            metrics = validate(self.model, self.val_loader, self.cached, self.device, self.values)
            record = {
                "epoch": epoch + 1,
                "lr": self.scheduler.get_last_lr()[0],
                **totals,
                **{f"val_{k}": v for k, v in metrics.items()},
            }
            history.append(record)
            improved = metrics["mae_expected"] < progress.best_mae
            if improved:
                progress = Progress(epoch + 1, metrics["mae_expected"], epoch + 1, metrics)
            progress.epoch = epoch + 1
            if self.context.is_main:
                self._save_epoch(record, progress, improved)
                log.info(
                    "epoch %d: loss %.4f val MAE %.3f (best %.3f @ %d)",
                    epoch + 1,
                    totals.get("loss", 0),
                    metrics["mae_expected"],
                    progress.best_mae,
                    progress.best_epoch,
                )
        # the main rank writes BEST; the others must not read it before it is complete
        barrier(self.context)
        if (output / BEST).is_file():
            best = torch.load(output / BEST, map_location="cpu", weights_only=True)
            self.model.load_state_dict(best, strict=False)
            if not progress.best_metrics:
                progress.best_metrics = validate(
                    self.model, self.val_loader, self.cached, self.device, self.values
                )
        return FitResult(
            self.built,
            self.model.cpu(),
            self.scale,
            progress.best_epoch,
            progress.best_metrics,
            history,
        )

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training data; returns the epoch's mean loss parts."""
        self.sampler.set_epoch(epoch)
        self.objective.start_epoch(epoch)  # NumCLIP: coarse bins first, then the fine ranks
        if not self.cached:
            self.model.train()
        totals: dict[str, float] = {}
        steps = len(self.train_loader)
        bar = tqdm(
            self.train_loader,
            desc=f"epoch {epoch + 1}/{self.config.epochs}",
            leave=False,
            disable=not (self.context.is_main and sys.stderr.isatty()),
        )
        for inputs, labels in bar:
            parts = self._step(inputs.to(self.device), labels.to(self.device))
            for key, value in parts.items():
                totals[key] = totals.get(key, 0.0) + value / steps
            bar.set_postfix(loss=f"{parts['loss']:.3f}")
        return totals

    def _step(self, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        config = self.config
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            image, prototypes = self.wrapped(inputs, features=self.cached)
            # The loss sees the global batch: its text->image KL is over the whole batch.
            image, labels = gather(image, self.context), gather(labels, self.context)
            logits = rank_logits(image, prototypes, self.model.logit_scale)
            loss, parts = self.objective(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if config.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.trainable_parameters(), config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return parts

    def _resume(self) -> Progress:
        path = self.config.output / CHECKPOINT
        if not (self.config.resume and path.is_file()):
            return Progress()
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state["model"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        log.info("resumed after epoch %d", state["epoch"] + 1)
        return Progress(state["epoch"] + 1, state["best_mae"], state["best_epoch"])

    def _save_epoch(self, record: dict[str, Any], progress: Progress, improved: bool) -> None:
        output = self.config.output
        with (output / LOG).open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        state = trainable_state(self.model)
        checkpoint = {
            "model": state,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": progress.epoch - 1,
            "best_mae": progress.best_mae,
            "best_epoch": progress.best_epoch,
        }
        # written whole or not at all: `--resume` and the other ranks read them
        atomic_file(output / CHECKPOINT, functools.partial(torch.save, checkpoint))
        if improved:
            atomic_file(output / BEST, functools.partial(torch.save, state))
