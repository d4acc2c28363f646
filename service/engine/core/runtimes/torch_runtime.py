"""The CLIP vision tower, built from a backbone manifest without the text tower."""

from __future__ import annotations

import threading

import torch
from open_clip.model import _build_vision_tower

from service.engine.core.device import Placement
from service.engine.core.runtimes.base import MeasuredEncoder, RuntimeInfo
from service.errors import ArtifactError
from service.registry import LoadedBackbone


class VisionTower(MeasuredEncoder):
    """Encodes preprocessed image batches into L2-normalised float32 features (eager
    PyTorch; measurement and warm-up come from :class:`MeasuredEncoder`)."""

    def __init__(self, backbone: LoadedBackbone, placement: Placement) -> None:
        manifest = backbone.manifest
        self.backbone_id = manifest.id
        self.placement = placement
        self.embed_dim = manifest.embed_dim
        self.image_size = manifest.preprocess.image_size
        self.runtime_info = RuntimeInfo("torch", placement.precision)
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
        return torch.nn.functional.normalize(features.float(), dim=-1).cpu()  # unit rows, fp32
