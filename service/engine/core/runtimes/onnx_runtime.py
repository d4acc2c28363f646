"""The vision tower on ONNX Runtime's CPU provider, from the cached ONNX export."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from service.engine.core.device import Placement
from service.engine.core.runtimes.base import MeasuredEncoder, RuntimeInfo
from service.engine.core.runtimes.export import INPUT


class OnnxRuntimeEncoder(MeasuredEncoder):
    """fp32 features from ``visual.onnx``. ORT keeps its own intra-op pool of ``threads``
    (without spinning: decoding threads share these cores), so one worker feeds it."""

    own_thread_pool = True

    def __init__(self, backbone_id: str, image_size: int, onnx_path: Path, threads: int) -> None:
        import onnxruntime as ort

        self.backbone_id = backbone_id
        self.image_size = image_size
        self.placement = Placement(torch.device("cpu"), "fp32")
        self.runtime_info = RuntimeInfo("onnxruntime", "fp32")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )

    def encode(self, pixels: torch.Tensor, intra_op_threads: int | None = None) -> torch.Tensor:
        """``intra_op_threads`` is ignored: the session's pool was sized at construction."""
        array = pixels.detach().float().contiguous().numpy()
        (features,) = self._session.run(None, {INPUT: array})
        return torch.nn.functional.normalize(torch.from_numpy(features).float(), dim=-1)
