"""The CLIP vision tower, built from a backbone manifest without the text tower."""

from __future__ import annotations

import logging
import threading
import time

import torch
from open_clip.model import _build_vision_tower

from service.engine.device import Placement
from service.errors import ArtifactError
from service.registry import LoadedBackbone

log = logging.getLogger(__name__)


class VisionTower:
    """Encodes preprocessed image batches into L2-normalised float32 features."""

    def __init__(self, backbone: LoadedBackbone, placement: Placement) -> None:
        manifest = backbone.manifest
        self.backbone_id = manifest.id
        self.placement = placement
        self.embed_dim = manifest.embed_dim
        self.image_size = manifest.preprocess.image_size
        model = _build_vision_tower(manifest.embed_dim, manifest.vision_cfg, manifest.quick_gelu)
        try:
            model.load_state_dict(backbone.state_dict, strict=True)
        except RuntimeError as exc:
            raise ArtifactError(
                f"backbone {manifest.id}: weights do not fit architecture {manifest.architecture}: "
                f"{exc}"
            ) from exc
        self.model = model.to(device=placement.device, dtype=placement.dtype).eval()
        self.model.requires_grad_(False)
        self.images_encoded = 0  # rows through the model since start (tests count on it)
        self._count_lock = threading.Lock()  # forwards may run concurrently (batcher workers)

    @torch.inference_mode()
    def encode(self, pixels: torch.Tensor, intra_op_threads: int | None = None) -> torch.Tensor:
        """``pixels``: float32 N x 3 x H x W on the CPU. Returns N x D float32 on the CPU.

        ``intra_op_threads`` sets this calling thread's intra-op threads (OpenMP's setting is per
        thread), so concurrent workers can split the cores between them.
        """
        threads = intra_op_threads
        if threads is not None and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        non_blocking = self.placement.device.type == "cuda"
        if non_blocking:
            pixels = pixels.pin_memory()
        batch = pixels.to(self.placement.device, non_blocking=non_blocking)
        with self._count_lock:
            self.images_encoded += len(pixels)
        features = self.model(batch.to(self.placement.dtype))
        features = torch.nn.functional.normalize(features.float(), dim=-1)
        return features.cpu()

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
            "batch-size calibration on %s: %s -> %d",
            self.backbone_id,
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
        log.info("warmed up %s in %.2fs", self.backbone_id, seconds)
        return seconds
