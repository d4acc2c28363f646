"""The runtimes a backbone can be served on, how to tell whether each is installed, and how
to build each from the cached exports."""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from service.engine.core.runtimes.base import MeasuredEncoder
from service.engine.core.runtimes.export import (
    IR_FILE,
    ONNX_FILE,
    convert_openvino,
    export_onnx,
    quantize_int8,
)
from service.registry import LoadedBackbone
from service.registry.exports import ExportCache

log = logging.getLogger(__name__)

RUNTIME_NAMES = ("torch", "onnxruntime", "openvino", "openvino-int8")
CALIBRATION_BATCH = 8


@dataclass
class BuildContext:
    """What building a candidate needs; exports are made once and shared by candidates."""

    loaded: LoadedBackbone
    reference: torch.nn.Module  # the tower in float32 on the CPU, eval mode
    cache: ExportCache
    threads: int  # cores the runtime's own pool may use
    calibration: torch.Tensor  # normalised images for INT8 quantisation

    @property
    def image_size(self) -> int:
        return self.loaded.manifest.preprocess.image_size

    # Cached: each runtime built from the ONNX file (or the IR) asks for it, and checking an
    # export hashes every file of it.
    @functools.cached_property
    def onnx(self) -> Path:
        version = f"torch{torch.__version__.split('+')[0]}"
        folder = self.cache.get_or_build(
            "onnx", version, lambda out: export_onnx(self.reference, self.image_size, out)
        )
        return folder / ONNX_FILE

    @functools.cached_property
    def openvino_ir(self) -> Path:
        version = f"ov{importlib.metadata.version('openvino')}"
        folder = self.cache.get_or_build(
            "openvino", version, lambda out: convert_openvino(self.onnx, out)
        )
        return folder / IR_FILE

    def openvino_int8_ir(self) -> Path:
        calibration = self.calibration.float().contiguous()
        data = hashlib.sha256(calibration.numpy().tobytes()).hexdigest()[:12]
        tools = {name: importlib.metadata.version(name) for name in ("openvino", "nncf")}
        version = f"ov{tools['openvino']}-nncf{tools['nncf']}-cal{data}"
        batches = [b.numpy() for b in calibration.split(CALIBRATION_BATCH)]
        folder = self.cache.get_or_build(
            "openvino-int8", version, lambda out: quantize_int8(self.openvino_ir, batches, out)
        )
        return folder / IR_FILE


def _onnxruntime(ctx: BuildContext, precision: str) -> MeasuredEncoder:
    from service.engine.core.runtimes.onnx_runtime import OnnxRuntimeEncoder

    return OnnxRuntimeEncoder(ctx.loaded.manifest.id, ctx.image_size, ctx.onnx, ctx.threads)


def _openvino(ctx: BuildContext, precision: str) -> MeasuredEncoder:
    from service.engine.core.runtimes.openvino_runtime import OpenVinoEncoder

    return OpenVinoEncoder(
        ctx.loaded.manifest.id, ctx.image_size, ctx.openvino_ir, ctx.threads, precision
    )


def _openvino_int8(ctx: BuildContext, precision: str) -> MeasuredEncoder:
    from service.engine.core.runtimes.openvino_runtime import OpenVinoEncoder

    return OpenVinoEncoder(
        ctx.loaded.manifest.id,
        ctx.image_size,
        ctx.openvino_int8_ir(),
        ctx.threads,
        "int8",
        name="openvino-int8",
    )


@dataclass(frozen=True)
class RuntimeSpec:
    """An optional runtime: the modules it imports, the extra that installs them, a builder
    (context, precision), and the precisions it can serve (those the CPU has natively are
    candidates)."""

    name: str
    modules: tuple[str, ...]
    extra: str
    build: Callable[[BuildContext, str], MeasuredEncoder]
    precisions: tuple[str, ...] = ("fp32",)

    def missing(self) -> str | None:
        """Why this runtime cannot run here (None when every module imports)."""
        for module in self.modules:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                return (
                    f"{module} is not installed ({exc}); "
                    f"pip install 'ordinal-service[{self.extra}]'"
                )
        return None


RUNTIMES: dict[str, RuntimeSpec] = {
    spec.name: spec
    for spec in (
        RuntimeSpec("onnxruntime", ("onnxruntime", "onnx", "onnxscript"), "onnx", _onnxruntime),
        RuntimeSpec(
            "openvino",
            ("openvino", "onnx", "onnxscript"),
            "openvino",
            _openvino,
            ("bf16", "fp16", "fp32"),
        ),
        RuntimeSpec(
            "openvino-int8",
            ("openvino", "onnx", "onnxscript", "nncf"),
            "openvino",
            _openvino_int8,
            ("int8",),
        ),
    )
}
