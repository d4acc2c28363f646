"""Choosing the device and the numeric precision the vision tower runs in."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Placement:
    device: torch.device
    precision: str  # key of DTYPES

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.precision]


def cpu_supports_bf16() -> bool:
    """True where the CPU has native bf16 dot products (AVX512-BF16 or AMX), Linux only."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def configure_threads(threads: int) -> int:
    """Intra-op threads for torch; 0 means one per core. Returns the number set."""
    count = threads or os.cpu_count() or 1
    torch.set_num_threads(count)
    return count


def resolve_placement(device: str = "auto", precision: str = "auto") -> Placement:
    """'auto' picks CUDA if present; precision 'auto' is fp16 on CUDA, bf16 on a bf16 CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available")
    if precision == "auto":
        if resolved.type == "cuda":
            precision = "fp16"
        elif cpu_supports_bf16():
            precision = "bf16"
        else:
            precision = "fp32"
    if precision not in DTYPES:
        raise ValueError(f"precision {precision!r} is not one of {sorted(DTYPES)}")
    if resolved.type == "cpu" and precision == "fp16":
        log.warning("fp16 on CPU is slow and poorly supported; bf16 or fp32 is better")
    return Placement(resolved, precision)
