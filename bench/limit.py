"""In-process figures: the encoder's own throughput limit, preprocessing and start-up parts."""

from __future__ import annotations

import os
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from service.engine.config import EngineConfig
from service.engine.device import configure_threads
from service.engine.factory import load_task_backbone
from service.engine.preprocess import ImageLimits, Preprocessor
from service.engine.runtimes.base import MeasuredEncoder


def median_ms(function: object, repeats: int = 7) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()  # type: ignore[operator]
        timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings)


def load_tower(store: Path) -> tuple[MeasuredEncoder, Preprocessor]:
    configure_threads(0)
    config = EngineConfig(limits=ImageLimits(max_pixels=100_000_000))
    backbone, _ = load_task_backbone(store, "age", config)
    backbone.tower.warm_up((1, 4))
    return backbone.tower, backbone.preprocess


@dataclass(frozen=True)
class Layout:
    """How the encoder runs in-process: ``workers`` threads, each with ``threads`` cores."""

    workers: int
    threads: int
    batch: int

    def __str__(self) -> str:
        return f"{self.workers}x{self.threads}t b{self.batch}"


def sustained_rate(tower: MeasuredEncoder, layout: Layout, seconds: float) -> float:
    """Images per second over ``seconds`` of back-to-back batches on ``layout.workers``
    threads (this machine is noisy, so the limit is re-measured next to each server run).

    Each worker's images over its own busy time, summed: the workers finish their last
    batches at different moments, and the idle tail after the first one stops is not the
    encoder's limit (it cost a few % in spells of a few seconds)."""
    pixels = torch.zeros(layout.batch, 3, tower.image_size, tower.image_size)
    tower.encode(pixels, layout.threads)
    spans = [(0, 0.0)] * layout.workers  # (images, seconds) per worker
    stop_at = time.perf_counter() + seconds

    def work(index: int) -> None:
        start, images = time.perf_counter(), 0
        while time.perf_counter() < stop_at:
            tower.encode(pixels, layout.threads)
            images += layout.batch
        spans[index] = (images, time.perf_counter() - start)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(layout.workers)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return sum(images / busy for images, busy in spans if busy)


def measure_limit(
    tower: MeasuredEncoder, preprocess: Preprocessor, images: dict[str, bytes], quick: bool
) -> dict[str, object]:
    """The best in-process throughput of the same tower at the same precision, over batch
    sizes and over one worker with every core vs. one worker per core."""
    cores = os.cpu_count() or 1
    shapes = [(1, cores)] + ([(cores, 1)] if cores > 1 else [])
    sizes = (1, 4) if quick else (1, 2, 4, 8)
    layouts = [Layout(w, t, b) for w, t in shapes for b in sizes]
    seconds = 2.0 if quick else 4.0
    throughput = {str(layout): sustained_rate(tower, layout, seconds) for layout in layouts}
    best = max(layouts, key=lambda layout: throughput[str(layout)])
    preprocess_ms = {name: median_ms(lambda d=data: preprocess(d)) for name, data in images.items()}
    one = torch.zeros(1, 3, tower.image_size, tower.image_size)
    return {
        "device": str(tower.placement.device),
        "precision": tower.placement.precision,
        "throughput_by_layout": throughput,
        "best_layout": {"workers": best.workers, "threads": best.threads, "batch": best.batch},
        "limit_img_s": throughput[str(best)],
        "forward_batch1_ms": median_ms(lambda: tower.encode(one, cores)),
        "preprocess_ms": preprocess_ms,
    }
