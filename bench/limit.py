"""In-process figures: the encoder's own throughput limit, preprocessing and start-up parts."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from service.engine.device import configure_threads, resolve_placement
from service.engine.preprocess import ImageLimits, Preprocessor
from service.engine.vision import VisionTower
from service.registry import ModelStore


def median_ms(function: object, repeats: int = 7) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()  # type: ignore[operator]
        timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings)


def load_tower(store: Path) -> tuple[VisionTower, Preprocessor]:
    configure_threads(0)
    age = ModelStore(store).load_task("age")
    backbone = ModelStore(store).load_backbone(age.manifest.backbone)
    tower = VisionTower(backbone, resolve_placement("auto", "auto"))
    tower.warm_up((1, 4))
    limits = ImageLimits(max_pixels=100_000_000)
    return tower, Preprocessor(backbone.manifest.preprocess, limits)


def sustained_rate(tower: VisionTower, batch: int, seconds: float) -> float:
    """Images per second over ``seconds`` of back-to-back batches (this machine is noisy,
    so the limit is re-measured next to each server run)."""
    pixels = torch.zeros(batch, 3, tower.image_size, tower.image_size)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        tower.encode(pixels)
        done += batch
    return done / (time.perf_counter() - start)


def measure_limit(
    tower: VisionTower, preprocess: Preprocessor, images: dict[str, bytes], quick: bool
) -> dict[str, object]:
    """Batched in-process throughput of the same tower at the same precision."""
    sizes = (1, 4) if quick else (1, 2, 4, 8, 16)
    throughput = {size: tower.throughput(size, repeats=3 if quick else 5) for size in sizes}
    preprocess_ms = {name: median_ms(lambda d=data: preprocess(d)) for name, data in images.items()}
    one = torch.zeros(1, 3, tower.image_size, tower.image_size)
    return {
        "device": str(tower.placement.device),
        "precision": tower.placement.precision,
        "throughput_by_batch": throughput,
        "limit_img_s": max(throughput.values()),
        "forward_batch1_ms": median_ms(lambda: tower.encode(one)),
        "preprocess_ms": preprocess_ms,
    }
