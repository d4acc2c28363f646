"""In-process figures: the served encoder's own throughput limit and its preprocessing."""

from __future__ import annotations

import dataclasses
import statistics
import threading
import time
from pathlib import Path

import torch

from service.engine.core.device import configure_threads, cpu_features
from service.engine.core.runtimes.base import MeasuredEncoder
from service.engine.core.runtimes.layout import EncoderLayout, LayoutChoice
from service.engine.factory import load_task_backbone
from service.imaging import ImageLimits, Preprocessor
from service.settings import Settings


def median_ms(function: object, repeats: int = 7) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()  # type: ignore[operator]
        timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings)


def load_tower(store: Path) -> tuple[MeasuredEncoder, Preprocessor]:
    """The tower exactly as the server builds it: the same settings (``OCLIP_*`` from the
    environment, so ``OCLIP_RUNTIME`` unset means ``auto``), the same selection of runtime,
    precision and layout. The selection is cached beside the backbone, so the server the
    bench starts next serves this very choice without measuring again."""
    config = dataclasses.replace(
        Settings().engine_config(), limits=ImageLimits(max_pixels=100_000_000)
    )
    configure_threads(config.cpu_cores)
    backbone, _ = load_task_backbone(store, "age", config)
    backbone.tower.warm_up((1, 4))
    return backbone.tower, backbone.preprocess


def sustained_rate(tower: MeasuredEncoder, layout: EncoderLayout, seconds: float) -> float:
    """Images per second over ``seconds`` of back-to-back batches on ``layout.workers``
    threads (this machine is noisy, so the limit is re-measured next to each server run).

    Each worker's images over its own busy time, summed: the workers finish their last
    batches at different moments, and the idle tail after the first one stops is not the
    encoder's limit (it cost a few % in spells of a few seconds)."""
    pixels = torch.zeros(layout.batch_size, 3, tower.image_size, tower.image_size)
    tower.encode(pixels, layout.threads)
    spans = [(0, 0.0)] * layout.workers  # (images, seconds) per worker
    stop_at = time.perf_counter() + seconds

    def work(index: int) -> None:
        start, images = time.perf_counter(), 0
        while time.perf_counter() < stop_at:
            tower.encode(pixels, layout.threads)
            images += layout.batch_size
        spans[index] = (images, time.perf_counter() - start)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(layout.workers)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return sum(images / busy for images, busy in spans if busy)


def served_layout(tower: MeasuredEncoder) -> LayoutChoice:
    assert tower.runtime_info.layout is not None  # the selection always measures one
    return tower.runtime_info.layout


def layout_rates(
    tower: MeasuredEncoder, quick: bool, served_batch: int | None = None
) -> dict[EncoderLayout, float]:
    """Sustained img/s of ``tower`` in every layout the server's search considers (every
    even split of the usable cores into workers x threads) x batch sizes up to 8 and the
    served one."""
    sizes = ({1, 4} if quick else {1, 2, 4, 8}) | ({served_batch} if served_batch else set())
    seconds = 2.0 if quick else 4.0
    return {
        layout: sustained_rate(tower, layout, seconds)
        for layout in (
            EncoderLayout(workers, threads, batch)
            for workers, threads in tower.shapes(0, 0)
            for batch in sorted(sizes)
        )
    }


def measure_limit(
    tower: MeasuredEncoder, preprocess: Preprocessor, images: dict[str, bytes], quick: bool
) -> dict[str, object]:
    """The best in-process throughput of the served tower (same runtime, same precision),
    over the layouts the server's own search considers (every even split of the usable
    cores into workers x threads) and batch sizes up to 8 and the served one: the limit is
    the best of the same space, sustained for seconds, not the server's short timing."""
    served = served_layout(tower)
    throughput = layout_rates(tower, quick, served.layout.batch_size)
    best = max(throughput, key=throughput.__getitem__)
    preprocess_ms = {name: median_ms(lambda d=data: preprocess(d)) for name, data in images.items()}
    one = torch.zeros(1, 3, tower.image_size, tower.image_size)
    return {
        "device": str(tower.placement.device),
        "runtime": tower.runtime_info.label,
        "precision": tower.placement.precision,
        "cpu_features": cpu_features(),
        "served_layout": served.as_dict(),
        "throughput_by_layout": {str(layout): rate for layout, rate in throughput.items()},
        "best_layout": dataclasses.asdict(best),
        "limit_img_s": throughput[best],
        "forward_batch1_ms": median_ms(lambda: tower.encode(one, best.threads)),
        "preprocess_ms": preprocess_ms,
    }
