"""What every encoder runtime shares: how it is measured, warmed up and laid out on cores.

An encoder turns N x 3 x H x W float32 pixels into N x D L2-normalised float32 features.
Eager PyTorch (:class:`~service.engine.core.runtimes.torch_runtime.VisionTower`), ONNX
Runtime and OpenVINO all fit it, so the micro-batcher, the batch-size calibration and auto
selection treat them alike.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from service.engine.core.device import Placement, usable_cores
from service.engine.core.runtimes.layout import LayoutChoice, search_layouts, worker_shapes

log = logging.getLogger(__name__)


class Encoder(Protocol):
    """What the batcher needs of an encoder (every runtime's, and test doubles)."""

    def encode(self, pixels: torch.Tensor, intra_op_threads: int | None = None) -> torch.Tensor:
        """N x 3 x H x W float32 -> N x D features."""
        ...

    def calibrate_batch_size(
        self, intra_op_threads: int | None = None, workers: int = 1, *, rounds: int = 2
    ) -> Calibration: ...

    def throughput(
        self, batch_size: int, intra_op_threads: int | None = None, workers: int = 1
    ) -> float:
        """Images per second with ``workers`` threads encoding batches at once."""
        ...


@dataclass(frozen=True)
class Calibration:
    """The batch size chosen at start-up, and the throughput measured at it."""

    batch_size: int
    img_s: float  # every worker encoding at once, as under load


@dataclass
class RuntimeInfo:
    """Which runtime serves a backbone, why, and what was measured when it was chosen."""

    name: str  # torch | onnxruntime | openvino | openvino-int8
    precision: str  # fp32 | bf16 | fp16 | int8
    requested: str = "torch"  # the OCLIP_RUNTIME asked for
    # every candidate that passed parity ("runtime/precision"), in its best layout
    measured_img_s: dict[str, float] = field(default_factory=dict)
    # the others that passed: one timed round at a small batch, not enough to be finalists
    screened_img_s: dict[str, float] = field(default_factory=dict)
    parity: dict[str, dict[str, Any]] = field(default_factory=dict)  # every gated candidate
    note: str | None = None
    layout: LayoutChoice | None = None  # the layout served and every layout's figure

    @property
    def label(self) -> str:
        return f"{self.name}/{self.precision}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "precision": self.precision,
            "requested": self.requested,
            "measured_img_s": {k: round(v, 2) for k, v in self.measured_img_s.items()},
            "screened_img_s": {k: round(v, 2) for k, v in self.screened_img_s.items()},
            "parity": self.parity,
            **({"layout": self.layout.as_dict()} if self.layout else {}),
            **({"note": self.note} if self.note else {}),
        }


class MeasuredEncoder:
    """Throughput, batch-size calibration and warm-up, in terms of :meth:`encode`.

    Subclasses set ``backbone_id``, ``image_size``, ``placement`` and ``runtime_info``.
    """

    backbone_id: str
    image_size: int
    placement: Placement
    runtime_info: RuntimeInfo
    own_thread_pool = False  # True: the runtime sizes its pool; per-call threads are ignored

    def encode(self, pixels: torch.Tensor, intra_op_threads: int | None = None) -> torch.Tensor:
        raise NotImplementedError

    def shapes(self, workers: int, cores: int) -> list[tuple[int, int | None]]:
        """The (workers, intra-op threads) pairs worth timing for this encoder on ``cores``
        cores (0: all usable); ``workers`` > 0 is the operator's and is kept."""
        if self.placement.device.type != "cpu":
            return [(workers or 1, None)]
        return worker_shapes(cores or usable_cores(), workers, self.own_thread_pool)

    def throughput(
        self,
        batch_size: int,
        intra_op_threads: int | None = None,
        workers: int = 1,
        repeats: int = 3,
    ) -> float:
        """Images per second with ``workers`` threads each encoding a ``batch_size`` batch at
        once, as the batcher's workers do under load (best of ``repeats`` rounds after one
        untimed round)."""
        self._round(batch_size, intra_op_threads, workers)
        best = min(self._round(batch_size, intra_op_threads, workers) for _ in range(repeats))
        return workers * batch_size / best

    def calibrate_layout(
        self,
        shapes: Sequence[tuple[int, int | None]],
        *,
        batch_size: int = 0,
        rounds: int = 2,
        limit: int = 64,
        budget_s: float = 0.5,
        max_batch_s: float = float("inf"),
    ) -> LayoutChoice:
        """The fastest layout among ``shapes`` x batch sizes (see :func:`search_layouts`),
        memoized: the same question asked twice (screening, then serving) is timed once."""
        key = (tuple(shapes), batch_size, rounds, limit, budget_s, max_batch_s)
        known: dict[tuple, LayoutChoice] = self.__dict__.setdefault("_layouts", {})
        if key not in known:
            known[key] = search_layouts(
                self._round,
                shapes,
                batch_size=batch_size,
                rounds=rounds,
                limit=limit,
                budget_s=budget_s,
                max_batch_s=max_batch_s,
                label=f"{self.backbone_id} ({self.runtime_info.label})",
            )
        return known[key]

    def calibrate_batch_size(
        self,
        intra_op_threads: int | None = None,
        workers: int = 1,
        limit: int = 64,
        budget_s: float = 0.5,
        *,
        rounds: int = 2,
    ) -> Calibration:
        """The batch size with the best throughput, with ``workers`` encoding at once.

        Measured with every worker at once because workers that share a machine's caches and
        memory bandwidth gain more from a bigger batch than one alone: on a 2-core Xeon,
        ViT-B/16 on one worker ran batch 1 and 4 at about the same rate, on two workers 40 %
        apart. The largest best size is not a latency cost: a lone request never waits for a
        full batch, only ``max_batch_delay_ms`` for company.
        """
        choice = self.calibrate_layout(
            [(workers, intra_op_threads)], rounds=rounds, limit=limit, budget_s=budget_s
        )
        return Calibration(choice.layout.batch_size, choice.img_s)

    def _round(self, batch_size: int, intra_op_threads: int | None, workers: int) -> float:
        """Seconds for ``workers`` threads, released together, to encode a batch each."""
        pixels = torch.zeros(batch_size, 3, self.image_size, self.image_size)
        return _concurrently(lambda: self.encode(pixels, intra_op_threads), workers)

    def warm_up(self, batch_sizes: tuple[int, ...] = (1,)) -> float:
        """Run forwards on zeros so first requests do not pay for lazy initialisation."""
        start = time.perf_counter()
        for size in batch_sizes:
            self.encode(torch.zeros(size, 3, self.image_size, self.image_size))
        seconds = time.perf_counter() - start
        log.info("warmed up %s (%s) in %.2fs", self.backbone_id, self.runtime_info.name, seconds)
        return seconds


def _concurrently(work: Callable[[], object], workers: int) -> float:
    """Seconds until ``workers`` threads, released together, have each run ``work`` once.
    A failure in any of them is raised here (a forward that fails fails the calibration)."""
    if workers == 1:
        start = time.perf_counter()
        work()
        return time.perf_counter() - start
    barrier = threading.Barrier(workers + 1)

    def run() -> None:
        barrier.wait()
        work()

    with ThreadPoolExecutor(workers, thread_name_prefix="calibration") as pool:
        runs = [pool.submit(run) for _ in range(workers)]
        barrier.wait()
        start = time.perf_counter()
        for finished in runs:
            finished.result()
        return time.perf_counter() - start
