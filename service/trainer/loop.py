"""The training loop: optimiser, schedule, AMP, clipping, checkpoints, resume, best-on-val."""

from __future__ import annotations

import json
import logging
import math
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from open_clip.transform import image_transform
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
from torchvision import transforms
from tqdm import tqdm

from service.trainer.architectures import BuiltClip, build_clip
from service.trainer.config import TrainConfig
from service.trainer.data import ImageDataset, RankScale, few_shot, read_samples
from service.trainer.distributed import DistContext, gather, init_distributed, shutdown
from service.trainer.losses import ordinal_clip_loss
from service.trainer.metrics import ordinal_metrics, ordinality
from service.trainer.model import OrdinalClip

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


@torch.no_grad()
def encode_all(model: OrdinalClip, dataset: ImageDataset, device: torch.device) -> TensorDataset:
    loader = DataLoader(dataset, batch_size=64)
    features, labels = [], []
    for pixels, rank in tqdm(loader, desc="caching image features", leave=False):
        features.append(model.encode_images(pixels.to(device)).cpu())
        labels.append(rank)
    return TensorDataset(torch.cat(features), torch.cat(labels))


@torch.no_grad()
def validate(
    model: OrdinalClip, loader: DataLoader, cached: bool, device: torch.device, values: np.ndarray
) -> dict[str, float]:
    model.eval()
    prototypes = model.prototypes()
    probabilities, labels = [], []
    for inputs, rank in loader:
        image = (
            torch.nn.functional.normalize(inputs.to(device), dim=-1)
            if cached
            else model.encode_images(inputs.to(device))
        )
        probabilities.append(torch.softmax(model.logit_scale * image @ prototypes.T, dim=-1).cpu())
        labels.append(rank)
    metrics = ordinal_metrics(
        torch.cat(probabilities).double().numpy(), torch.cat(labels).numpy(), values
    )
    metrics["ordinality"] = ordinality(prototypes.cpu())
    return metrics


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


def resolve_device(name: str, context_local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{context_local_rank}" if torch.cuda.is_available() else "cpu")
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
        return _fit(config, context, device)
    finally:
        shutdown(context)


def _fit(config: TrainConfig, context: DistContext, device: torch.device) -> FitResult:
    scale = RankScale(config.values(), config.label_list())
    built = build_clip(config.backbone, config.pretrained, seed=config.seed)
    model = OrdinalClip(built, config, scale.num_ranks).to(device)
    cfg = built.preprocess
    size = cfg.size if isinstance(cfg.size, int) else int(cfg.size[0])
    eval_tf = image_transform(size, is_train=False, mean=cfg.mean, std=cfg.std)
    train_samples = read_samples(
        config.train, config.images_root, scale.num_ranks, config.strict_data
    )
    if config.shots:
        train_samples = few_shot(train_samples, config.shots, config.seed)
    val_samples = read_samples(config.val, config.images_root, scale.num_ranks, config.strict_data)
    cached = config.image_encoder == "frozen"
    if cached:  # the frozen encoder sees each image once; epochs cost only the text side
        model.eval()
        train_set: Any = encode_all(model, ImageDataset(train_samples, eval_tf), device)
        val_set: Any = encode_all(model, ImageDataset(val_samples, eval_tf), device)
    else:
        train_set = ImageDataset(train_samples, train_transform(size, cfg.mean, cfg.std))
        val_set = ImageDataset(val_samples, eval_tf)
    if config.batch_size % context.world_size:
        raise ValueError(
            f"batch size {config.batch_size} is not divisible by {context.world_size} processes"
        )
    sampler = DistributedSampler(
        train_set, context.world_size, context.rank, shuffle=True, seed=config.seed
    )
    train_loader = DataLoader(
        train_set,
        batch_size=config.batch_size // context.world_size,
        sampler=sampler,
        drop_last=True,
        num_workers=config.workers,
    )
    if len(train_loader) == 0:
        raise ValueError(
            f"{len(train_set)} training samples make no full batch of {config.batch_size}"
        )
    val_loader = DataLoader(val_set, batch_size=64, num_workers=config.workers)
    wrapped: torch.nn.Module = DistributedDataParallel(model) if context.enabled else model
    optimizer = make_optimizer(config, model.trainable_parameters())
    steps = config.epochs * len(train_loader)
    scheduler = cosine_with_warmup(
        optimizer, round(config.warmup_epochs * len(train_loader)), steps
    )
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    values = np.asarray(scale.values, dtype=np.float64)
    config.output.mkdir(parents=True, exist_ok=True)
    (config.output / "config.json").write_text(config.model_dump_json(indent=2) + "\n")
    start_epoch, best_mae, best_epoch, best_metrics = 0, math.inf, -1, {}
    if config.resume and (config.output / CHECKPOINT).is_file():
        state = torch.load(config.output / CHECKPOINT, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best_mae, best_epoch = (
            state["epoch"] + 1,
            state["best_mae"],
            state["best_epoch"],
        )
        log.info("resumed from epoch %d", state["epoch"])
    history = []
    for epoch in range(start_epoch, config.epochs):
        sampler.set_epoch(epoch)
        if not cached:
            model.train()
        totals: dict[str, float] = {}
        bar = tqdm(
            train_loader,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not (context.is_main and sys.stderr.isatty()),
            leave=False,
        )
        for inputs, labels in bar:
            inputs, labels = inputs.to(device), labels.to(device)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                image, prototypes = wrapped(inputs, features=cached)
                image, labels = gather(image, context), gather(labels, context)
                logits = model.logit_scale * image.float() @ prototypes.float().T
                loss, parts = ordinal_clip_loss(logits, labels, config.ce_weight, config.kl_weight)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            for key, value in parts.items():
                totals[key] = totals.get(key, 0.0) + value / len(train_loader)
            bar.set_postfix(loss=f"{parts['loss']:.3f}")
        metrics = validate(model, val_loader, cached, device, values)
        record = {
            "epoch": epoch + 1,
            "lr": scheduler.get_last_lr()[0],
            **totals,
            **{f"val_{k}": v for k, v in metrics.items()},
        }
        history.append(record)
        improved = metrics["mae_expected"] < best_mae
        if improved:
            best_mae, best_epoch, best_metrics = metrics["mae_expected"], epoch + 1, metrics
        if context.is_main:
            _save_epoch(
                config.output,
                model,
                optimizer,
                scheduler,
                record,
                epoch,
                best_mae,
                best_epoch,
                improved,
            )
            log.info(
                "epoch %d: loss %.4f val MAE %.3f (best %.3f @ %d)",
                epoch + 1,
                totals.get("loss", 0),
                metrics["mae_expected"],
                best_mae,
                best_epoch,
            )
    if (config.output / BEST).is_file():
        best = torch.load(config.output / BEST, map_location="cpu", weights_only=True)
        model.load_state_dict(best, strict=False)
        if not best_metrics:
            best_metrics = validate(model, val_loader, cached, device, values)
    return FitResult(built, model.cpu(), scale, best_epoch, best_metrics, history)


def _save_epoch(
    output: Path,
    model: OrdinalClip,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    record: dict[str, Any],
    epoch: int,
    best_mae: float,
    best_epoch: int,
    improved: bool,
) -> None:
    with (output / LOG).open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    state = trainable_state(model)
    torch.save(
        {
            "model": state,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
            "best_mae": best_mae,
            "best_epoch": best_epoch,
        },
        output / CHECKPOINT,
    )
    if improved:
        torch.save(state, output / BEST)
