"""The vision tower on OpenVINO's CPU plugin: fp32, bf16 (AVX512-BF16/AMX) or INT8 IR."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import torch

from service.engine.core.device import Placement
from service.engine.core.runtimes.base import MeasuredEncoder, RuntimeInfo

HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


class OpenVinoEncoder(MeasuredEncoder):
    """Features from an OpenVINO IR compiled for latency: one stream over ``threads`` cores,
    so one batcher worker keeps it busy and nothing else competes for the cores.

    ``precision`` is the inference precision for float layers ("fp32", "bf16" or "fp16"); an INT8
    IR keeps its quantised layers in int8 whatever it is.
    """

    own_thread_pool = True

    def __init__(
        self,
        backbone_id: str,
        image_size: int,
        ir_path: Path,
        threads: int,
        precision: str,
        name: str = "openvino",
    ) -> None:
        import openvino as ov

        self.backbone_id = backbone_id
        self.image_size = image_size
        float_precision = "bf16" if precision == "int8" else precision
        self.placement = Placement(torch.device("cpu"), float_precision)
        self.runtime_info = RuntimeInfo(name, precision)
        core = ov.Core()
        self._compiled = core.compile_model(
            core.read_model(str(ir_path)),
            "CPU",
            {
                "PERFORMANCE_HINT": "LATENCY",
                "NUM_STREAMS": "1",
                "INFERENCE_NUM_THREADS": str(threads or os.cpu_count() or 1),
                "INFERENCE_PRECISION_HINT": HINTS[float_precision],
            },
        )
        self._local = threading.local()  # an infer request is not shared between threads

    def encode(self, pixels: torch.Tensor, intra_op_threads: int | None = None) -> torch.Tensor:
        """``intra_op_threads`` is ignored: the compiled model's threads were set at build."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        array = pixels.detach().float().contiguous().numpy()
        features = request.infer([array])[0]
        return torch.nn.functional.normalize(torch.from_numpy(features).float(), dim=-1)  # a copy
