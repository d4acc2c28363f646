"""Exporting the vision tower: ONNX with a dynamic batch axis, OpenVINO IR converted from
that ONNX file (OpenVINO's own converter cannot trace open_clip's tower), and optional
INT8 post-training quantisation with NNCF."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

ONNX_FILE = "visual.onnx"
IR_FILE = "visual.xml"
INPUT = "pixels"
OUTPUT = "features"
OPSET = 18


def export_onnx(model: torch.nn.Module, image_size: int, folder: Path) -> Path:
    """``model`` (float32, eval) -> ``folder/visual.onnx``, batch axis dynamic, weights inline."""
    path = folder / ONNX_FILE
    example = torch.zeros(2, 3, image_size, image_size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_shapes=({0: batch},),
            opset_version=OPSET,
            verbose=False,
        )
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    program.save(str(path), external_data=False)
    return path


def convert_openvino(onnx_path: Path, folder: Path) -> Path:
    """ONNX -> OpenVINO IR (float32 weights: the precision is chosen when compiling)."""
    import openvino as ov

    path = folder / IR_FILE
    ov.save_model(ov.convert_model(str(onnx_path)), str(path), compress_to_fp16=False)
    return path


def quantize_int8(ir_path: Path, calibration: Sequence[np.ndarray], folder: Path) -> Path:
    """Post-training INT8 quantisation of an IR on ``calibration`` batches (NNCF, transformer
    preset: attention softmax and layer norms stay in float)."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(ir_path))
    quantized = nncf.quantize(
        model,
        nncf.Dataset(list(calibration)),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=sum(len(batch) for batch in calibration),
    )
    path = folder / IR_FILE
    ov.save_model(quantized, str(path), compress_to_fp16=False)
    return path
