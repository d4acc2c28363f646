"""What every encoder runtime shares: how it is measured, warmed up and laid out on cores.

An encoder turns N x 3 x H x W float32 pixels into N x D L2-normalised float32 features.
Eager PyTorch (:class:`service.engine.vision.VisionTower`), ONNX Runtime and OpenVINO all
fit it, so the micro-batcher, the batch-size calibration and auto selection treat them alike.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from service.engine.device import Placement, encoder_layout

log = logging.getLogger(__name__)


class Encoder(Protocol):
    """What the batcher needs of an encoder (every runtime's, and test doubles)."""

    def encode(self, pixels: torch.Tensor, intra_op_threads: int | None = None) -> torch.Tensor:
        """N x 3 x H x W float32 -> N x D features."""
        ...

    def calibrate_batch_size(self, intra_op_threads: int | None = None) -> int: ...

    def throughput(self, batch_size: int, intra_op_threads: int | None = None) -> float: ...


@dataclass
class RuntimeInfo:
    """Which runtime serves a backbone, why, and what was measured when it was chosen."""

    name: str  # torch | onnxruntime | openvino | openvino-int8
    precision: str  # fp32 | bf16 | fp16 | int8
    requested: str = "torch"  # the OCLIP_RUNTIME asked for
    measured_img_s: dict[str, float] = field(default_factory=dict)  # candidates that passed
    parity: dict[str, dict[str, Any]] = field(default_factory=dict)  # every gated candidate
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "precision": self.precision,
            "requested": self.requested,
            "measured_img_s": {k: round(v, 2) for k, v in self.measured_img_s.items()},
            "parity": self.parity,
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

    def layout(self, workers: int, cores: int) -> tuple[int, int | None]:
        """(batcher workers, cores they share; None = leave threads to the runtime).

        Eager torch splits the cores between two workers under load. A runtime with its own
        pool gets one worker (unless the operator says otherwise) so that two pools never
        fight over the same cores.
        """
        if self.own_thread_pool:
            return workers or 1, None
        return encoder_layout(self.placement, workers, cores)

    def throughput(
        self, batch_size: int, intra_op_threads: int | None = None, repeats: int = 3
    ) -> float:
        """Images per second at ``batch_size`` (best of ``repeats`` after one untimed run)."""
        pixels = torch.zeros(batch_size, 3, self.image_size, self.image_size)
        threads = intra_op_threads
        self.encode(pixels, threads)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            self.encode(pixels, threads)
            best = min(best, time.perf_counter() - start)
        return batch_size / best

    def calibrate_batch_size(
        self, intra_op_threads: int | None = None, limit: int = 64, budget_s: float = 0.5
    ) -> int:
        """The batch size with the best measured throughput, doubling from 1.

        Doubling stops once one batch takes longer than ``budget_s`` (bounding start-up
        time) or at ``limit``. The largest best size is not a latency cost: a lone request
        never waits for a full batch, only ``max_batch_delay_ms`` for company. Sizes within
        3 % of the best count as equal and the smallest of them wins. ``intra_op_threads``:
        what one worker uses under load.
        """
        measured: dict[int, float] = {}
        size = 1
        while size <= limit:
            measured[size] = self.throughput(size, intra_op_threads, repeats=2)
            if size / measured[size] > budget_s:
                break
            size *= 2
        best = max(measured.values())
        chosen = min(s for s, rate in measured.items() if rate >= 0.97 * best)
        log.info(
            "batch-size calibration on %s (%s): %s -> %d",
            self.backbone_id,
            self.runtime_info.name,
            ", ".join(f"{s}: {r:.1f} img/s" for s, r in measured.items()),
            chosen,
        )
        return chosen

    def warm_up(self, batch_sizes: tuple[int, ...] = (1,)) -> float:
        """Run forwards on zeros so first requests do not pay for lazy initialisation."""
        start = time.perf_counter()
        for size in batch_sizes:
            self.encode(torch.zeros(size, 3, self.image_size, self.image_size))
        seconds = time.perf_counter() - start
        log.info("warmed up %s (%s) in %.2fs", self.backbone_id, self.runtime_info.name, seconds)
        return seconds


def normalized(features: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length, in float32 (what every encoder returns)."""
    return torch.nn.functional.normalize(features.float(), dim=-1)
